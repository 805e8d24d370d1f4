/// The shifted-grid convolution computed directly in registers, for Float32 on processors with AVX2
/// and FMA (the C kernel `reprise_shifted_convolution_f32`, see CKernels.h).
///
/// The matrix-product form of ``ShiftedGrid`` runs one GEMM per tap (or one over all taps with a
/// result nine times the output): OpenBLAS packs the padded input again for every call and writes
/// the result once to zero it and once per tap. For the thin products of these layers (12 to 64
/// outputs, 16 to 48 input channels) that traffic costs more than the multiply-adds; the direct
/// kernel reads the grid where it lies and writes each output element once, into its place in the
/// output tensor. A stand-alone C comparison on one core (DenseNet-BC's 48 -> 12 3x3 convolution on
/// 32x32, 16x16 and 8x8 maps; ResNet-20's 16 -> 16, 32 -> 32 and 64 -> 64): 1.3x to 1.9x the
/// speed of the per-tap GEMMs.
///
/// The input gradient is the same kernel run backwards: input pixel s receives, from every tap k,
/// the output gradient at s - offset(k), read from the output gradient laid on the grid behind
/// `reach` zeros so that every shifted read stays inside it. The weight gradient reads that same
/// grid: a sum over positions per (output, channel, tap), with no shifted copy of the output
/// gradient per tap.
extension ShiftedGrid {
  /// Elements of one image's padded planes over all channels: what a chunk's grid holds per image.
  var imageElements: Int { g.inputChannels * paddedHeight * paddedWidth }

  /// The forward pass into `y`, in chunks of images (DirectConvolution+Chunks.swift), with `x`
  /// normalised on its way into each chunk's grid when `normalizing`.
  func forwardDirect<T: TensorScalar>(
    _ x: Tensor, _ weight: Tensor, into y: Tensor, _: T.Type, normalizing affine: (scale: [T], shift: [T])? = nil
  ) {
    let w = weight.contiguous(), tapRanges = forwardTapRanges
    DirectConvolution.forEachImageChunk(g, imageElements: imageElements) { images, chunk, _ in
      let grid = ShiftedGrid(chunk)
      DirectConvolution.forward(
        chunk, grid: grid.padded(slice(x, images, alongAxis: 0), T.self, normalizing: affine), channelLength: grid.length,
        offsets: grid.offsets, tapRanges: tapRanges, pitch: grid.pitch, weight: w, into: slice(y, images, alongAxis: 0))
    }
  }

  /// The input gradient (into `dx`, from `weight`) and the weight gradient (into `dw`, from
  /// `input`, normalised as it is padded when `normalizing`), either or both, in chunks of images
  /// (DirectConvolution+Chunks.swift).
  func backwardDirect<T: TensorScalar>(
    _ dy: Tensor, input x: Tensor?, weight: Tensor?, inputGradient dx: Tensor?, weightGradient dw: Tensor?, _: T.Type,
    normalizing affine: (scale: [T], shift: [T])? = nil
  ) {
    let w = weight?.contiguous()
    DirectConvolution.forEachImageChunk(g, imageElements: imageElements, weightGradient: dw) {
      images, chunk, dw in
      ShiftedGrid(chunk).backwardChunk(
        slice(dy, images, alongAxis: 0), input: x.map { slice($0, images, alongAxis: 0) }, weight: w,
        inputGradient: dx.map { slice($0, images, alongAxis: 0) }, weightGradient: dw, T.self, normalizing: affine)
    }
  }

  /// ``backwardDirect(_:input:weight:inputGradient:weightGradient:_:normalizing:)`` over the whole
  /// of `g`'s batch, from one copy of the output gradient on the grid.
  private func backwardChunk<T: TensorScalar>(
    _ dy: Tensor, input x: Tensor?, weight: Tensor?, inputGradient dx: Tensor?, weightGradient dw: Tensor?, _: T.Type,
    normalizing affine: (scale: [T], shift: [T])?
  ) {
    // The output gradient behind `reach` zeros, so that every read shifted back by a tap's offset
    // lies in the grid.
    let reach = length - span
    let grid = DirectConvolution.gradientGrid(dy, Float.self, reach: reach, pitch: pitch, extent: reach + length)
    if let dw, let x { weightGradientDirect(grid, reach: reach, padded(x, T.self, normalizing: affine), into: dw) }
    if let dx, let weight { inputGradientDirect(grid, reach: reach, weight, into: dx) }
  }

  /// Input pixel s gets, from every tap k, the output gradient at s - offset(k): the forward kernel
  /// run over the gradient grid with offsets reach - offset(k), input channels as outputs.
  private func inputGradientDirect(_ grid: Tensor, reach: Int, _ weight: Tensor, into dx: Tensor) {
    let w = weight.contiguous(), (o, ci, kk) = (g.groupOutputs, g.groupInputs, offsets.count)
    let extent = reach + length, backwards = offsets.map { reach - $0 }, layout = PlaneLayout(dx)
    let tapRanges = inputGradientTapRanges
    for group in 0..<g.groups {
      let packed = DirectConvolution.packTaps(
        w.base(Float.self) + group * o * ci * kk, outputs: ci, channels: o, taps: kk, outputStride: kk, channelStride: ci * kk)
      DirectConvolution.convolveRows(
        grid: grid.base(Float.self) + group * o * extent, gridChannelStride: extent, channels: o, packed: packed,
        outputs: ci, offsets: backwards, tapRanges: tapRanges, origin: g.padding.height * paddedWidth + g.padding.width, pitch: pitch,
        batch: g.batch, height: g.height, width: g.width, into: dx.base(Float.self) + group * ci * layout.channelStride,
        outputImageStride: layout.imageStride, outputChannelStride: layout.channelStride)
    }
    withExtendedLifetime((grid, w, dx)) {}
  }

  /// For each output row oy, the taps whose kernel row lies on the image and not on the padding
  /// above or below it: input row oy + ky·dilation - padding.
  var forwardTapRanges: [Int] {
    tapRanges(rows: g.outputHeight) { oy, ky in (0..<g.height).contains(oy + ky * g.dilation.height - g.padding.height) }
  }

  /// For each input row iy, the taps that carry it an output gradient: output row iy + padding -
  /// ky·dilation.
  var inputGradientTapRanges: [Int] {
    tapRanges(rows: g.height) { iy, ky in (0..<g.outputHeight).contains(iy + g.padding.height - ky * g.dilation.height) }
  }

  /// [first, end) per row, in taps (kernel rows times the kernel's width): the kernel rows ky for
  /// which `reads(row, ky)` says the row reads the map rather than zeros. The direct kernel skips
  /// the rest, which read only the zeros of the grid's margins: 4 of the 28 kernel rows of a pair
  /// of output rows of a 7x7 kernel on 8x8 planes.
  func tapRanges(rows: Int, reads: (_ row: Int, _ kernelRow: Int) -> Bool) -> [Int] {
    (0..<rows).flatMap { row -> [Int] in
      let kernelRows = (0..<g.kernelHeight).filter { reads(row, $0) }
      guard let first = kernelRows.first, let last = kernelRows.last else { return [0, 0] }
      return [first * g.kernelWidth, (last + 1) * g.kernelWidth]
    }
  }

  /// dW[o, c, k] = sum over grid positions t of dy[o, t] · x_grid[c, t + offset(k)].
  private func weightGradientDirect(_ grid: Tensor, reach: Int, _ xp: Tensor, into dw: Tensor) {
    DirectConvolution.weightGradient(
      g, gradient: grid, extent: reach + length, reach: reach, grid: xp, channelLength: length, offsets: offsets, pitch: pitch,
      into: dw)
  }
}
