import CKernels

/// Depthwise convolutions in Float32 on processors with AVX2 and FMA: the C kernels of `Depthwise.c`
/// (tiles of 8 segments of 8 outputs with fused multiply-adds), which read a zero-padded grid with
/// no border tests, consecutive outputs from consecutive grid positions.
///
/// A strided convolution reads every s-th position, so its padded plane is first split into
/// phases, one grid per remainder (a, b) of the padded row and column modulo the stride: tap
/// (ky, kx) reads phase (ky·dh mod sh, kx·dw mod sw) shifted by (ky·dh div sh, kx·dw div sw),
/// consecutive positions again, and the same kernel computes it. With stride 1 there is one phase,
/// the padded plane itself. The rows are split into column phases and spread back by the kernels
/// of `Phases.c`. (The Swift loops they replace read and scattered strided elements one at a time;
/// docs/performance.md has what that cost MobileNetV2.)
///
/// The input gradient is a correlation too, one per phase of the padded input: position
/// (r·sh + a, c·sw + b) takes output gradient (r - i, c - j) through each tap of phase (a, b)
/// whose shift is (i, j), the taps in reverse order.
extension DepthwiseConvolution {
  /// Whether the plane kernels compute this convolution for scalars of type `T`.
  func usesPlaneKernels<T: TensorScalar>(_: T.Type) -> Bool {
    usesVectorKernels(T.self)
  }

  /// Whether the input gradient can go to an ``InputGradientTarget`` plane by plane (the plane
  /// kernels, on planes too large for the channel lanes).
  var deliversInputGradientPlanes: Bool {
    usesPlaneKernels(Float.self) && !usesChannelLanes(Float.self)
  }

  /// Where tap `t` lies on the padded plane: its row and column offset from the first tap's.
  private func reach(_ t: Int) -> (y: Int, x: Int) {
    (t / g.kernelWidth * g.dilation.height, t % g.kernelWidth * g.dilation.width)
  }

  /// The phase grids of the padded input: rows and pitch of each, and the floats of all of them
  /// (phase (a, b) is the (a·sw + b)-th).
  private var phases: (rows: Int, pitch: Int, count: Int) {
    let (sh, sw) = (g.stride.height, g.stride.width)
    let rows = (g.height + 2 * g.padding.height + sh - 1) / sh, pitch = (g.width + 2 * g.padding.width + sw - 1) / sw
    return (rows, pitch, sh * sw * rows * pitch)
  }

  /// Each tap's offset from an output position y·pitch + x in the phase grids.
  private func phaseOffsets() -> [Int] {
    let (sh, sw) = (g.stride.height, g.stride.width), (rows, pitch, _) = phases
    return (0..<taps).map { t in
      let (y, x) = reach(t)
      return (y % sh * sw + x % sw) * rows * pitch + y / sh * pitch + x / sw
    }
  }

  /// Copies a dense input plane into the phase grids (`rows` x `pitch` each); the padding positions
  /// are left as they are (zero).
  private func copyIntoPhases(_ plane: UnsafePointer<Float>, _ grid: UnsafeMutablePointer<Float>, rows: Int, pitch: Int) {
    let (sh, sw) = (g.stride.height, g.stride.width), (top, left, width) = (g.padding.height, g.padding.width, g.width)
    if sh == 1 && sw == 1 {
      for y in 0..<g.height { (grid + (y + top) * pitch + left).update(from: plane + y * width, count: width) }
      return
    }
    // Phases and positions advance with counters: a division per element would cost more than the copy.
    let phaseSize = rows * pitch
    var (a, r) = (top % sh, top / sh)
    for y in 0..<g.height {
      let row = grid + (a * sw * rows + r) * pitch, source = plane + y * width
      if sw == 2 {  // even columns to phase left % 2, odd ones to the other
        reprise_split_columns_f32(
          source, width, row + left % 2 * phaseSize + left / 2, row + (left + 1) % 2 * phaseSize + (left + 1) / 2)
      } else {
        var (b, column) = (left % sw, left / sw)
        for x in 0..<width {
          row[b &* phaseSize &+ column] = source[x]
          b &+= 1
          if b == sw { (b, column) = (0, column &+ 1) }
        }
      }
      a += 1
      if a == sh { (a, r) = (0, r + 1) }
    }
  }

  /// Runs `body(plane, grid, scratch)` for every (image, channel) plane, split between the threads,
  /// with `fill(source plane, grid)` having written the plane of `source` ([N, C, h, w] with dense
  /// planes) into a zeroed grid of `gridCount` floats whose other positions stay zero. `planeCost`
  /// is the work of one plane, for the split.
  private func forEachPlane(
    _ source: Tensor, gridCount: Int, scratchCount: Int, planeCost: Int,
    fill: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void,
    _ body: (_ plane: Int, _ grid: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>) -> Void
  ) {
    let layout = PlaneLayout(source), src = source.base(Float.self)
    Parallel.forRanges(g.batch * g.inputChannels, costPerItem: planeCost) { planes in
      let grid = UnsafeMutablePointer<Float>.allocate(capacity: gridCount)
      let scratch = UnsafeMutablePointer<Float>.allocate(capacity: scratchCount)
      defer { grid.deallocate(); scratch.deallocate() }
      grid.update(repeating: 0, count: gridCount)
      for p in planes {
        let c = p / g.batch, n = p % g.batch
        fill(src + n * layout.imageStride + c * layout.channelStride, grid)
        body(p, grid, scratch)
      }
    }
    withExtendedLifetime(source) {}
  }

  func forwardByPlanes(_ x: Tensor, _ w: Tensor, into y: Tensor) {
    let yl = PlaneLayout(y), pw = w.base(Float.self), py = y.base(Float.self), kk = taps
    let (rows, pitch, count) = phases, offsets = phaseOffsets()
    offsets.withUnsafeBufferPointer { offsets in
      forEachPlane(
        x, gridCount: count, scratchCount: reprise_depthwise_scratch_count(g.outputHeight, g.outputWidth),
        planeCost: g.outputPlane * kk, fill: { copyIntoPhases($0, $1, rows: rows, pitch: pitch) }
      ) { p, grid, scratch in
        let c = p / g.batch, n = p % g.batch
        reprise_depthwise_plane_f32(
          grid, pitch, pw + c * kk, offsets.baseAddress, kk, g.outputHeight, g.outputWidth,
          py + n * yl.imageStride + c * yl.channelStride, scratch)
      }
    }
    withExtendedLifetime((w, y)) {}
  }

  func backwardInputByPlanes(_ dy: Tensor, _ w: Tensor, into dx: Tensor) {
    backwardInputByPlanes(dy, w, into: InputGradientTarget(dx))
    withExtendedLifetime(dx) {}
  }

  /// The input gradient delivered plane by plane to `target`, added to what a plane holds where
  /// the target says so (each element `old + new`, the bits of the gradient computed and then
  /// added), so that a gradient accumulated into a buffer needs no tensor of its own and no pass
  /// that adds it.
  func backwardInputByPlanes(_ dy: Tensor, _ w: Tensor, into target: InputGradientTarget) {
    let (sh, sw) = (g.stride.height, g.stride.width), kk = taps
    let (rows, pitch, _) = phases
    // The output gradient sits at (top, left) of its grid: room for the largest shift above and to
    // the left, and for the phase grids' extent below and to the right.
    let top = reach(kk - 1).y / sh, left = reach(kk - 1).x / sw
    let gridPitch = left + max(g.outputWidth, pitch), gridCount = (top + max(g.outputHeight, rows)) * gridPitch
    // Per phase (a, b), the a·sw + b-th: the grid rows and columns that are input positions (not
    // padding), and its taps in reverse order with their offsets, phase after phase in `tapList`.
    var phaseRows: [Range<Int>] = [], phaseColumns: [Range<Int>] = [], tapStart = [0]
    var tapList: [Int] = [], offsetList: [Int] = []
    for a in 0..<sh {
      for b in 0..<sw {
        let rowRange = PhaseGrid.inside(remainder: a, padding: g.padding.height, size: g.height, stride: sh)
        let columnRange = PhaseGrid.inside(remainder: b, padding: g.padding.width, size: g.width, stride: sw)
        for t in (0..<kk).reversed() {
          let (y, x) = reach(t)
          guard y % sh == a && x % sw == b else { continue }
          tapList.append(t)
          offsetList.append((rowRange.lowerBound + top - y / sh) * gridPitch + columnRange.lowerBound + left - x / sw)
        }
        phaseRows.append(rowRange)
        phaseColumns.append(columnRange)
        tapStart.append(tapList.count)
      }
    }
    let pw = w.base(Float.self)
    // Every channel's weights in the order of `tapList`, gathered once rather than for every plane.
    let gathered = (0..<g.inputChannels).flatMap { c in tapList.map { pw[c * kk + $0] } }
    let pieces = reprise_depthwise_scratch_count(rows, pitch), direct = sh == 1 && sw == 1
    let (oh, ow, width, ph, pwd) = (g.outputHeight, g.outputWidth, g.width, g.padding.height, g.padding.width)
    let taps = tapList.count
    gathered.withUnsafeBufferPointer { gathered in
      offsetList.withUnsafeBufferPointer { offsetList in
        forEachPlane(
          dy, gridCount: gridCount, scratchCount: pieces + rows * pitch, planeCost: g.height * g.width * kk,
          fill: { plane, grid in
            for y in 0..<oh { (grid + (top + y) * gridPitch + left).update(from: plane + y * ow, count: ow) }
          }
        ) { p, grid, scratch in
          let c = p / g.batch, n = p % g.batch, adding = target.adding[c] != 0
          let plane = target.planes[c]! + n * target.imageStrides[c]
          let output = scratch + pieces, weights = gathered.baseAddress! + c * taps
          for phase in 0..<sh * sw {
            let (rowRange, columnRange) = (phaseRows[phase], phaseColumns[phase])
            let (count, height, columns) = (tapStart[phase + 1] - tapStart[phase], rowRange.count, columnRange.count)
            guard height > 0 && columns > 0 else { continue }
            // With stride 1 the one phase's positions are the input's, in order: straight into the
            // plane, unless they are to be added to it.
            let destination = direct && !adding ? plane : output
            if count == 0 {
              destination.update(repeating: 0, count: height * columns)
            } else {
              reprise_depthwise_plane_f32(
                grid, gridPitch, weights + tapStart[phase], offsetList.baseAddress! + tapStart[phase], count, height, columns,
                destination, scratch)
            }
            if direct {
              if adding { for j in 0..<height * columns { plane[j] = plane[j] + output[j] } }
              continue
            }
            let (a, b) = (phase / sw, phase % sw)
            for i in 0..<height {
              let row = plane + ((rowRange.lowerBound + i) * sh + a - ph) * width + columnRange.lowerBound * sw + b - pwd
              let values = output + i * columns
              if adding {
                for j in 0..<columns { row[j &* sw] = row[j &* sw] + values[j] }
              } else if sw == 2 {
                reprise_spread_columns_f32(values, columns, row)
              } else {
                for j in 0..<columns { row[j &* sw] = values[j] }
              }
            }
          }
        }
      }
    }
    withExtendedLifetime(w) {}
  }
}
