import CKernels

/// The stride-1 depthwise convolution in Float32 on processors with AVX2 and FMA: each plane copied
/// once into a zero-padded grid, then the C kernels of `Depthwise.c` (tiles of 8 segments of 8
/// outputs with fused multiply-adds) compute it with no border tests. The input gradient of a
/// stride-1 convolution is itself one: the output gradient on a grid padded by (k - 1)·d - p, with
/// the taps reversed.
extension DepthwiseConvolution {
  /// Whether the plane kernels compute this convolution for scalars of type `T`.
  func usesPlaneKernels<T: TensorScalar>(_: T.Type) -> Bool {
    usesVectorKernels(T.self) && g.stride == 1
  }

  /// Whether they compute its input gradient too: the padding is at most the kernel's reach, so the
  /// output gradient fits its grid.
  func usesPlaneKernelsBackward<T: TensorScalar>(_: T.Type) -> Bool {
    usesPlaneKernels(T.self) && g.padding.height <= (g.kernelHeight - 1) * g.dilation.height
      && g.padding.width <= (g.kernelWidth - 1) * g.dilation.width
  }

  /// The tap offsets on a grid of row pitch `pitch`, in tap order.
  private func offsets(pitch: Int) -> [Int] {
    (0..<g.kernelHeight * g.kernelWidth).map { t in
      t / g.kernelWidth * g.dilation.height * pitch + t % g.kernelWidth * g.dilation.width
    }
  }

  /// Copies a dense `height` x `width` plane into the interior of a grid of row pitch `pitch` at
  /// (`top`, `left`); the grid's margins are left as they are (zero).
  private func copy(
    _ plane: UnsafePointer<Float>, height: Int, width: Int, into grid: UnsafeMutablePointer<Float>, pitch: Int, top: Int, left: Int
  ) {
    for row in 0..<height { (grid + (top + row) * pitch + left).update(from: plane + row * width, count: width) }
  }

  /// Runs `body(plane, grid)` for every (image, channel) plane, split between the threads, with the
  /// plane of `source` ([N, C, h, w] with dense planes) copied into a zero grid of `gridHeight` x
  /// `gridWidth` at (`top`, `left`). `planeCost` is the work of one plane, for the split.
  private func forEachPaddedPlane(
    _ source: Tensor, height h: Int, width w: Int, gridHeight: Int, gridWidth: Int, top: Int, left: Int, planeCost: Int,
    _ body: (_ plane: Int, _ grid: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>) -> Void
  ) {
    let layout = PlaneLayout(source), src = source.base(Float.self)
    let scratchCount = reprise_depthwise_scratch_count(max(g.outputHeight, g.height), max(g.outputWidth, g.width))
    Parallel.forRanges(g.batch * g.inputChannels, costPerItem: planeCost) { planes in
      // The margins stay zero: only the interior is written, plane after plane.
      let grid = UnsafeMutablePointer<Float>.allocate(capacity: gridHeight * gridWidth)
      let scratch = UnsafeMutablePointer<Float>.allocate(capacity: scratchCount)
      defer { (grid.deallocate(), scratch.deallocate()) }
      grid.update(repeating: 0, count: gridHeight * gridWidth)
      for p in planes {
        let c = p / g.batch, n = p % g.batch
        copy(src + n * layout.imageStride + c * layout.channelStride, height: h, width: w, into: grid, pitch: gridWidth, top: top, left: left)
        body(p, grid, scratch)
      }
    }
  }

  func forwardByPlanes(_ x: Tensor, _ w: Tensor, into y: Tensor) {
    let yl = PlaneLayout(y), pw = w.base(Float.self), py = y.base(Float.self), kk = g.kernelHeight * g.kernelWidth
    let gridHeight = g.height + 2 * g.padding.height, gridWidth = g.width + 2 * g.padding.width
    let taps = offsets(pitch: gridWidth)
    taps.withUnsafeBufferPointer { taps in
      forEachPaddedPlane(
        x, height: g.height, width: g.width, gridHeight: gridHeight, gridWidth: gridWidth, top: g.padding.height,
        left: g.padding.width, planeCost: g.outputPlane * kk
      ) { p, grid, scratch in
        let c = p / g.batch, n = p % g.batch
        reprise_depthwise_plane_f32(
          grid, gridWidth, pw + c * kk, taps.baseAddress, kk, g.outputHeight, g.outputWidth,
          py + n * yl.imageStride + c * yl.channelStride, scratch)
      }
    }
    withExtendedLifetime((x, w, y)) {}
  }

  func backwardInputByPlanes(_ dy: Tensor, _ w: Tensor, into dx: Tensor) {
    let dxl = PlaneLayout(dx), pdx = dx.base(Float.self), kk = g.kernelHeight * g.kernelWidth
    let reachH = (g.kernelHeight - 1) * g.dilation.height, reachW = (g.kernelWidth - 1) * g.dilation.width
    let gridHeight = g.height + reachH, gridWidth = g.width + reachW
    let taps = offsets(pitch: gridWidth)
    // Every channel's taps reversed: input pixel i takes output pixel i + p - k·d with weight k.
    let source = w.scalars(as: Float.self)
    let reversed = (0..<g.inputChannels * kk).map { i in source[i / kk * kk + kk - 1 - i % kk] }
    reversed.withUnsafeBufferPointer { weights in
      taps.withUnsafeBufferPointer { taps in
        forEachPaddedPlane(
          dy, height: g.outputHeight, width: g.outputWidth, gridHeight: gridHeight, gridWidth: gridWidth,
          top: reachH - g.padding.height, left: reachW - g.padding.width, planeCost: g.height * g.width * kk
        ) { p, grid, scratch in
          let c = p / g.batch, n = p % g.batch
          reprise_depthwise_plane_f32(
            grid, gridWidth, weights.baseAddress! + c * kk, taps.baseAddress, kk, g.height, g.width,
            pdx + n * dxl.imageStride + c * dxl.channelStride, scratch)
        }
      }
    }
    withExtendedLifetime((dy, dx)) {}
  }

  /// Each tap's sum runs in 8 lanes over one image and is then added, lane by lane, into Float64
  /// sums over the images (the blocked summation of Summation.swift), in image order.
  func backwardWeightByPlanes(_ dy: Tensor, _ x: Tensor, into dw: Tensor) {
    let dyl = PlaneLayout(dy), xl = PlaneLayout(x), pdy = dy.base(Float.self), px = x.base(Float.self), pdw = dw.base(Float.self)
    let kk = g.kernelHeight * g.kernelWidth
    let gridHeight = g.height + 2 * g.padding.height, gridWidth = g.width + 2 * g.padding.width
    let taps = offsets(pitch: gridWidth)
    let scratchCount = reprise_depthwise_scratch_count(g.outputHeight, g.outputWidth)
    taps.withUnsafeBufferPointer { taps in
      Parallel.forRanges(g.inputChannels, costPerItem: g.batch * g.outputPlane * kk) { channels in
        let grid = UnsafeMutablePointer<Float>.allocate(capacity: gridHeight * gridWidth)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: scratchCount)
        let lanes = UnsafeMutablePointer<Float>.allocate(capacity: kk * 8)
        defer { (grid.deallocate(), scratch.deallocate(), lanes.deallocate()) }
        grid.update(repeating: 0, count: gridHeight * gridWidth)
        var sums = [Double](repeating: 0, count: kk)
        for c in channels {
          for t in 0..<kk { sums[t] = 0 }
          for n in 0..<g.batch {
            copy(
              px + n * xl.imageStride + c * xl.channelStride, height: g.height, width: g.width, into: grid, pitch: gridWidth,
              top: g.padding.height, left: g.padding.width)
            reprise_depthwise_weight_gradient_plane_f32(
              grid, gridWidth, pdy + n * dyl.imageStride + c * dyl.channelStride, taps.baseAddress, kk, g.outputHeight,
              g.outputWidth, lanes, scratch)
            for t in 0..<kk { for lane in 0..<8 { sums[t] += Double(lanes[t * 8 + lane]) } }
          }
          for t in 0..<kk { pdw[c * kk + t] = Float(sums[t]) }
        }
      }
    }
    withExtendedLifetime((dy, x, dw)) {}
  }
}
