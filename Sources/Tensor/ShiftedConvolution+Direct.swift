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
/// `reach` zeros so that every shifted read stays inside it. The weight gradient reads that same
/// grid: a sum over positions per (output, channel, tap), with no shifted copy of the output
/// gradient per tap.
extension ShiftedGrid {
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

  /// The input gradient (into `dx`, from `weight`) and the weight gradient (into `dw`, from
  /// `input`, normalised as it is padded when `normalizing`), either or both, from one copy of the
  /// output gradient on the grid.
  func backwardDirect<T: TensorScalar>(
    _ dy: Tensor, input x: Tensor?, weight: Tensor?, inputGradient dx: Tensor?, weightGradient dw: Tensor?, _: T.Type,
    normalizing affine: (scale: [T], shift: [T])? = nil
  ) {
    let (grid, reach) = gradientGrid(dy)
    if let dw, let x { weightGradientDirect(grid, reach: reach, padded(x, T.self, normalizing: affine), into: dw) }
    if let dx, let weight { inputGradientDirect(grid, reach: reach, weight, into: dx) }
  }

  /// The output gradient laid on the grid behind `reach` zeros: output (n, y, x) at
  /// reach + n·Hp·Wp + y·Wp + x, zeros elsewhere; [O, reach + length].
  private func gradientGrid(_ dy: Tensor) -> (grid: Tensor, reach: Int) {
    let reach = length - span, extent = reach + length
    let grid = Tensor(uninitializedShape: [g.outputChannels * extent], dtype: .float32)
    let layout = PlaneLayout(dy), src = dy.base(Float.self), dst = grid.base(Float.self)
    let (oh, ow, hp, wp) = (g.outputHeight, g.outputWidth, paddedHeight, paddedWidth)
    Parallel.forRanges(g.outputChannels, costPerItem: extent) { channels in
      for channel in channels {
        // One pass over the row: zeros only between the copied output rows.
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
    withExtendedLifetime(dy) {}
    return (grid, reach)
  }

  /// Input pixel s gets, from every tap k, the output gradient at s - offset(k): the forward kernel
  /// run over the gradient grid with offsets reach - offset(k), input channels as outputs.
  private func inputGradientDirect(_ grid: Tensor, reach: Int, _ weight: Tensor, into dx: Tensor) {
    let w = weight.contiguous(), (o, ci, kk) = (g.groupOutputs, g.groupInputs, offsets.count)
    let extent = reach + length, backwards = offsets.map { reach - $0 }, layout = PlaneLayout(dx)
    for group in 0..<g.groups {
      let packed = packTaps(w.base(Float.self) + group * o * ci * kk, outputs: ci, channels: o, outputStride: kk, channelStride: ci * kk)
      convolveRows(
        grid: grid.base(Float.self) + group * o * extent, gridChannelStride: extent, channels: o, packed: packed,
        outputs: ci, offsets: backwards, origin: g.padding.height * paddedWidth + g.padding.width, height: g.height,
        width: g.width, into: dx.base(Float.self) + group * ci * layout.channelStride, layout)
    }
    withExtendedLifetime((grid, w, dx)) {}
  }

  /// dW[o, c, k] = sum over grid positions t of dy[o, t] · x_grid[c, t + offset(k)]. The positions
  /// are split into up to four pieces per thread, which the threads claim as they finish (a static
  /// split of one piece per thread kept the others waiting whenever one thread lost its core); each
  /// piece keeps its own sums (8 lanes each), added in piece and lane order, so the result depends on
  /// the thread count only. A piece zeroes its own sums, and the final additions are split between
  /// the threads too: neither is serial work.
  private func weightGradientDirect(_ grid: Tensor, reach: Int, _ xp: Tensor, into dw: Tensor) {
    let (o, ci, kk) = (g.groupOutputs, g.groupInputs, offsets.count), pairs = ci * kk, extent = reach + length
    // At least 2048 positions a piece: the sums of a piece cost o·pairs·8 zeroings and additions
    // against o·pairs·positions multiply-adds, under 1/256 of them.
    let pieces = max(1, min(4 * Parallel.threadCount, span / 2048)), sums = o * pairs * 8
    let partial = Tensor(uninitializedShape: [pieces * sums], dtype: .float32)
    let pp = partial.base(Float.self), out = dw.base(Float.self)
    for group in 0..<g.groups {
      // Pair (c, k) reads input channel c shifted by tap k: pairs in dW's own order.
      let rows = (0..<pairs).map { (group * ci + $0 / kk) * length + offsets[$0 % kk] }
      rows.withUnsafeBufferPointer { rows in
        Parallel.run(pieces) { p in
          (pp + p * sums).update(repeating: 0, count: sums)
          reprise_shifted_weight_gradient_f32(
            grid.base(Float.self) + group * o * extent + reach, extent, o, xp.base(Float.self), rows.baseAddress, pairs,
            span * p / pieces / 8 * 8, p == pieces - 1 ? span : span * (p + 1) / pieces / 8 * 8, pp + p * sums)
        }
      }
      Parallel.forRanges(o * pairs, costPerItem: pieces * 8) { range in
        for i in range {
          var total: Float = 0
          for p in 0..<pieces {
            let lanes = pp + p * sums + i * 8
            for lane in 0..<8 { total += lanes[lane] }
          }
          out[group * o * pairs + i] = total
        }
      }
    }
    withExtendedLifetime((grid, xp, partial, dw)) {}
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
