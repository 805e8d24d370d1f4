import CKernels

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
/// `reach` zeros so that every shifted read stays inside it.
extension ShiftedGrid {
  /// Whether this processor runs the direct kernel.
  static let hasDirectKernel = reprise_kernels_available()

  /// Whether scalars of type `T` take the direct kernel here: Float32 when the processor has it.
  func usesDirectKernel<T: TensorScalar>(_: T.Type) -> Bool { T.self == Float.self && Self.hasDirectKernel }

  /// The forward pass from the padded input `xp` straight into `y`.
  func forwardDirect(_ xp: Tensor, _ weight: Tensor, into y: Tensor) {
    let w = weight.contiguous(), (o, ci, kk) = (g.groupOutputs, g.groupInputs, offsets.count)
    let layout = PlaneLayout(y)
    for group in 0..<g.groups {
      let packed = packTaps(w.base(Float.self) + group * o * ci * kk, outputs: o, channels: ci, outputStride: ci * kk, channelStride: kk)
      convolveRows(
        grid: xp.base(Float.self) + group * ci * length, gridChannelStride: length, channels: ci, packed: packed,
        outputs: o, offsets: offsets, origin: 0, height: g.outputHeight, width: g.outputWidth,
        into: y.base(Float.self) + group * o * layout.channelStride, layout)
    }
    withExtendedLifetime((xp, w, y)) {}
  }

  /// The input gradient from the output gradient `dy`, straight into `dx`.
  func backwardInputDirect(_ dy: Tensor, _ weight: Tensor, into dx: Tensor) {
    let w = weight.contiguous(), (o, ci, kk) = (g.groupOutputs, g.groupInputs, offsets.count)
    let reach = length - span, extent = reach + length
    let grid = Tensor(uninitializedShape: [g.outputChannels * extent], dtype: .float32)
    let layout = PlaneLayout(dy), src = dy.base(Float.self), dst = grid.base(Float.self)
    let (oh, ow, hp, wp) = (g.outputHeight, g.outputWidth, paddedHeight, paddedWidth)
    Parallel.forRanges(g.outputChannels, costPerItem: extent) { channels in
      for channel in channels {
        // Output (n, y, x) at reach + n·Hp·Wp + y·Wp + x, zeros elsewhere, in one pass.
        let row = dst + channel * extent
        var written = 0
        for n in 0..<g.batch {
          for y in 0..<oh {
            let start = reach + n * hp * wp + y * wp
            (row + written).update(repeating: 0, count: start - written)
            (row + start).update(from: src + n * layout.imageStride + channel * layout.channelStride + y * ow, count: ow)
            written = start + ow
          }
        }
        (row + written).update(repeating: 0, count: extent - written)
      }
    }
    let backwards = offsets.map { reach - $0 }, dxLayout = PlaneLayout(dx)
    for group in 0..<g.groups {
      let packed = packTaps(w.base(Float.self) + group * o * ci * kk, outputs: ci, channels: o, outputStride: kk, channelStride: ci * kk)
      convolveRows(
        grid: dst + group * o * extent, gridChannelStride: extent, channels: o, packed: packed, outputs: ci,
        offsets: backwards, origin: g.padding.height * wp + g.padding.width, height: g.height, width: g.width,
        into: dx.base(Float.self) + group * ci * dxLayout.channelStride, dxLayout)
    }
    withExtendedLifetime((dy, w, grid, dx)) {}
  }

  /// One group's weights `w(o, c, k) = weights[o·outputStride + c·channelStride + k]` in the
  /// kernel's tiles.
  private func packTaps(_ weights: UnsafePointer<Float>, outputs: Int, channels: Int, outputStride: Int, channelStride: Int) -> [Float] {
    let kk = offsets.count
    return [Float](unsafeUninitializedCapacity: reprise_packed_taps_count(outputs, channels, kk)) { buffer, count in
      reprise_pack_taps_f32(weights, outputs, channels, kk, outputStride, channelStride, 1, buffer.baseAddress)
      count = buffer.count
    }
  }

  /// Every output row (n, y) of [N, outputs, height, width] planes at `output` (strides from
  /// `layout`): the rows split between threads, row (n, y) reading the grid from
  /// origin + n·Hp·Wp + y·Wp.
  private func convolveRows(
    grid: UnsafePointer<Float>, gridChannelStride: Int, channels: Int, packed: [Float], outputs: Int, offsets: [Int],
    origin: Int, height: Int, width: Int, into output: UnsafeMutablePointer<Float>, _ layout: PlaneLayout
  ) {
    let (hp, wp, kk) = (paddedHeight, paddedWidth, offsets.count)
    packed.withUnsafeBufferPointer { packed in
      offsets.withUnsafeBufferPointer { offsets in
        Parallel.forRanges(g.batch * height, costPerItem: outputs * channels * kk * width) { rows in
          reprise_shifted_convolution_f32(
            grid, gridChannelStride, channels, packed.baseAddress, outputs, offsets.baseAddress, kk, rows.lowerBound,
            rows.count, height, width, hp * wp, wp, origin, output, layout.imageStride, layout.channelStride)
        }
      }
    }
  }
}
