import CKernels

/// Strided convolution on the input's phase grids, computed by the direct kernels of the stride-1
/// shifted grid (``DirectConvolution``), for Float32 on processors with AVX2 and FMA.
///
/// With stride s, output (oy, ox) reads padded input (oy·s + ky·d, ox·s + kx·d). Split each padded
/// plane into its phases, one per remainder (a, b) of row and column modulo the stride: phase (a, b)
/// holds padded pixel (i·s + a, j·s + b) at (i, j). Tap (ky, kx) then reads phase
/// (ky·d mod s, kx·d mod s) at (oy + ky·d / s, ox + kx·d / s): at consecutive positions, as a
/// stride-1 tap does, so the stride-1 kernel computes any stride with offsets into the phases.
/// Only the phases some tap reads are stored (one, a subsampled copy, for a 1x1 stride-2 shortcut).
/// A phase is PH x PW with PH = OH + max(ky·d / s) and PW likewise; a channel holds its phases one
/// after another, each with the batch's images one after another. This replaces the im2col matrix
/// (KH·KW copies of the output's positions) by one copy of the input, and a GEMM on it by the
/// direct kernels (docs/performance.md#phase-grids).
///
/// The input gradient is computed per phase: input pixels of phase (a, b) receive, from each tap of
/// that phase, the output gradient shifted back by the tap's offset, which is the forward kernel run
/// over the output gradient laid on the phase pitch, with that phase's taps only. Pixels of phases
/// no tap reads, or beyond the last output's reach, get zero. The weight gradient sums over the
/// output positions laid on that same pitch.
struct PhaseGrid {
  let g: ConvolutionGeometry
  /// The rows and columns of one image's phase.
  let phaseHeight, phaseWidth: Int
  /// The phases some tap reads, as (row remainder, column remainder), in grid order.
  let phases: [(row: Int, column: Int)]
  /// Per kernel tap (ky, kx), in tap order: the index of its phase in `phases`.
  let tapPhases: [Int]
  /// Per kernel tap: its shift within its phase, ky·d / s rows and kx·d / s columns.
  let shifts: [(row: Int, column: Int)]
  /// Per kernel tap: the offset of its reads from an output's grid position.
  let offsets: [Int]

  init(_ g: ConvolutionGeometry) {
    self.g = g
    var phases: [(row: Int, column: Int)] = [], tapPhases: [Int] = [], shifts: [(row: Int, column: Int)] = []
    for k in 0..<g.kernelHeight * g.kernelWidth {
      let down = k / g.kernelWidth * g.dilation.height, across = k % g.kernelWidth * g.dilation.width
      let phase = (row: down % g.stride.height, column: across % g.stride.width)
      if let index = phases.firstIndex(where: { $0 == phase }) {
        tapPhases.append(index)
      } else {
        tapPhases.append(phases.count)
        phases.append(phase)
      }
      shifts.append((down / g.stride.height, across / g.stride.width))
    }
    let (ph, pw) = (g.outputHeight + shifts.map(\.row).max()!, g.outputWidth + shifts.map(\.column).max()!)
    (self.phases, self.tapPhases, self.shifts, phaseHeight, phaseWidth) = (phases, tapPhases, shifts, ph, pw)
    offsets = zip(tapPhases, shifts).map { phase, shift in phase * g.batch * ph * pw + shift.row * pw + shift.column }
  }

  /// Whether this path computes the convolution: a stride above 1, as for the shifted grid enough
  /// channels per group for the direct kernel's tiles (see ``ShiftedGrid/applies(to:)``), and at most
  /// 64 outputs per group. A strided tile reads stride² times more input than a stride-1 tile
  /// does for its outputs, and on wider layers (ShakeNet's 192 and 384) OpenBLAS's blocked product
  /// on the im2col matrix was as fast or faster in all three passes (docs/performance.md#phase-grids).
  static func applies(to g: ConvolutionGeometry) -> Bool {
    g.stride != 1 && g.groupInputs >= (g.groups == 1 ? 4 : 8) && (4...64).contains(g.groupOutputs)
  }

  /// Images every PH·PW elements of a phase, rows every PW.
  var pitch: DirectConvolution.Pitch { DirectConvolution.Pitch(image: phaseHeight * phaseWidth, row: phaseWidth) }
  /// Elements of one phase of one channel: the batch's images.
  var phaseLength: Int { g.batch * phaseHeight * phaseWidth }
  /// Elements of one channel: its phases.
  var length: Int { phases.count * phaseLength }
  /// Elements of one image's phases over all channels: what a chunk's grid holds per image.
  var imageElements: Int { g.inputChannels * phases.count * phaseHeight * phaseWidth }
  /// The zeros before the output gradient's grid: the largest shift back by a tap's offset, so that
  /// every such read lies in the grid.
  var reach: Int { (phaseHeight - g.outputHeight) * phaseWidth + phaseWidth - g.outputWidth }

  /// The phases of image tensor `x` ([N, C, H, W] with dense planes), zero where they fall in the
  /// padding: [C, phases, N, PH, PW] flattened.
  func phased(_ x: Tensor) -> Tensor {
    let out = Tensor(uninitializedShape: [g.inputChannels * length], dtype: .float32)
    let layout = PlaneLayout(x), src = x.base(Float.self), dst = out.base(Float.self)
    let remainders = phases.flatMap { [$0.row, $0.column] }, ranges = phases.flatMap { Self.flattened(covered($0)) }
    let channels = g.inputChannels
    // Planes in the input's order, image by image, each kernel call naming the next plane so
    // that its reads are on their way (Phases.c).
    let plane = { (p: Int) in src + p / channels * layout.imageStride + p % channels * layout.channelStride }
    Parallel.forRanges(g.batch * channels, costPerItem: phases.count * phaseHeight * phaseWidth) { planes in
      for p in planes {
        let n = p / channels, c = p % channels
        reprise_phase_split_f32(
          plane(p), g.height, g.width, g.stride.height, g.stride.width, g.padding.height, g.padding.width, remainders,
          ranges, phases.count, phaseHeight, phaseWidth, dst + c * length + n * phaseHeight * phaseWidth, phaseLength,
          p + 1 < planes.upperBound ? plane(p + 1) : nil)
      }
    }
    withExtendedLifetime(x) {}
    return out
  }

  /// The rows and columns of `phase` that hold input pixels (the others fall on the padding).
  func covered(_ phase: (row: Int, column: Int)) -> (rows: Range<Int>, columns: Range<Int>) {
    (
      Self.inside(remainder: phase.row, padding: g.padding.height, size: g.height, stride: g.stride.height, count: phaseHeight),
      Self.inside(remainder: phase.column, padding: g.padding.width, size: g.width, stride: g.stride.width, count: phaseWidth)
    )
  }

  /// Ranges as Phases.c takes them: first row, rows, first column, columns.
  static func flattened(_ ranges: (rows: Range<Int>, columns: Range<Int>)) -> [Int] {
    [ranges.rows.lowerBound, ranges.rows.count, ranges.columns.lowerBound, ranges.columns.count]
  }

  /// The positions j < count of a phase whose input coordinate j·stride + remainder - padding lies
  /// in [0, size): the one rule for which phase positions hold input pixels, which the depthwise
  /// kernels' phases (DepthwiseConvolution+Planes.swift) follow too.
  static func inside(remainder: Int, padding: Int, size: Int, stride: Int, count: Int = .max) -> Range<Int> {
    let lower = padding > remainder ? (padding - remainder + stride - 1) / stride : 0
    let upper = min(count, (size + padding - remainder + stride - 1) / stride)
    return lower..<max(lower, upper)
  }

  /// `y = conv(x, w)` into `y`, channel-major or a channel range of a channel-major tensor, in
  /// chunks of images (DirectConvolution+Chunks.swift).
  func forward(_ x: Tensor, _ weight: Tensor, into y: Tensor) {
    let w = weight.contiguous()
    DirectConvolution.forEachImageChunk(g, imageElements: imageElements) { images, chunk, _ in
      let grid = PhaseGrid(chunk)
      DirectConvolution.forward(
        chunk, grid: grid.phased(slice(x, images, alongAxis: 0)), channelLength: grid.length, offsets: grid.offsets,
        pitch: grid.pitch, weight: w, into: slice(y, images, alongAxis: 0))
    }
  }

  /// The input gradient (into `dx`, from `weight`) and the weight gradient (into `dw`, from `x`),
  /// either or both, in chunks of images (DirectConvolution+Chunks.swift).
  func backward(_ dy: Tensor, input x: Tensor?, weight: Tensor?, inputGradient dx: Tensor?, weightGradient dw: Tensor?) {
    let w = weight?.contiguous()
    DirectConvolution.forEachImageChunk(g, imageElements: imageElements, weightGradient: dw) {
      images, chunk, dw in
      PhaseGrid(chunk).backwardChunk(
        slice(dy, images, alongAxis: 0), input: x.map { slice($0, images, alongAxis: 0) }, weight: w,
        inputGradient: dx.map { slice($0, images, alongAxis: 0) }, weightGradient: dw)
    }
  }

  /// ``backward(_:input:weight:inputGradient:weightGradient:)`` over the whole of `g`'s batch, from
  /// one copy of the output gradient on the phase pitch.
  private func backwardChunk(
    _ dy: Tensor, input x: Tensor?, weight: Tensor?, inputGradient dx: Tensor?, weightGradient dw: Tensor?
  ) {
    let grid = DirectConvolution.gradientGrid(dy, Float.self, reach: reach, pitch: pitch, extent: reach + phaseLength)
    if let dw, let x { weightGradient(grid, x, into: dw) }
    if let dx, let weight { inputGradient(grid, weight, into: dx) }
  }

  /// dW[o, c, k] = sum over output positions t of dy[o, t] · phases[c, t + offset(k)].
  private func weightGradient(_ grid: Tensor, _ x: Tensor, into dw: Tensor) {
    DirectConvolution.weightGradient(
      g, gradient: grid, extent: reach + phaseLength, reach: reach, grid: phased(x), channelLength: length, offsets: offsets,
      pitch: pitch, into: dw)
  }

  /// Each phase's input pixels from that phase's taps, then laid back into `dx`.
  private func inputGradient(_ grid: Tensor, _ weight: Tensor, into dx: Tensor) {
    let w = weight.contiguous(), (o, ci, kk) = (g.groupOutputs, g.groupInputs, offsets.count)
    let extent = reach + phaseLength, source = w.base(Float.self)
    var parts: [(rows: Range<Int>, columns: Range<Int>, values: Tensor)] = []
    for (index, phase) in phases.enumerated() {
      let taps = (0..<kk).filter { tapPhases[$0] == index }
      let (rows, columns) = covered(phase)
      let plane = rows.count * columns.count
      let values = Tensor(uninitializedShape: [g.inputChannels * g.batch * plane], dtype: .float32)
      parts.append((rows, columns, values))
      if plane == 0 { continue }
      let backwards = taps.map { reach - shifts[$0].row * phaseWidth - shifts[$0].column }
      for group in 0..<g.groups {
        // This phase's taps of the group's weights, w(c, o, t) at [o][c][t]: input channels are the
        // kernel's outputs here.
        var phaseWeights = [Float](repeating: 0, count: o * ci * taps.count)
        for oo in 0..<o {
          for c in 0..<ci {
            for (t, k) in taps.enumerated() {
              phaseWeights[(oo * ci + c) * taps.count + t] = source[((group * o + oo) * ci + c) * kk + k]
            }
          }
        }
        let packed = DirectConvolution.packTaps(
          phaseWeights, outputs: ci, channels: o, taps: taps.count, outputStride: taps.count, channelStride: ci * taps.count)
        DirectConvolution.convolveRows(
          grid: grid.base(Float.self) + group * o * extent, gridChannelStride: extent, channels: o, packed: packed,
          outputs: ci, offsets: backwards, origin: rows.lowerBound * phaseWidth + columns.lowerBound, pitch: pitch,
          batch: g.batch, height: rows.count, width: columns.count,
          into: values.base(Float.self) + group * ci * g.batch * plane, outputImageStride: plane,
          outputChannelStride: g.batch * plane)
      }
    }
    interleave(parts, into: dx)
    withExtendedLifetime((grid, w)) {}
  }

  /// Lays each phase's input-gradient values ([C, N, rows, columns] per phase) back at their input
  /// pixels, and zeros at the pixels of no phase (Phases.c).
  private func interleave(_ parts: [(rows: Range<Int>, columns: Range<Int>, values: Tensor)], into dx: Tensor) {
    let layout = PlaneLayout(dx), out = dx.base(Float.self), (sh, sw) = (g.stride.height, g.stride.width)
    // The index in `phases` of each remainder pair (-1 where no tap reads it), and each phase's
    // ranges and values.
    let index = (0..<sh * sw).map { r in phases.firstIndex { $0 == (r / sw, r % sw) } ?? -1 }
    let ranges = parts.flatMap { Self.flattened(($0.rows, $0.columns)) }
    let values: [UnsafePointer<Float>?] = parts.map { UnsafePointer($0.values.base(Float.self)) }
    Parallel.forRanges(g.inputChannels * g.batch, costPerItem: g.height * g.width) { planes in
      for p in planes {
        let c = p / g.batch, n = p % g.batch
        reprise_phase_merge_f32(
          out + n * layout.imageStride + c * layout.channelStride, g.height, g.width, sh, sw, g.padding.height, g.padding.width,
          index, values, ranges, p)
      }
    }
    withExtendedLifetime(parts) {}
  }
}
