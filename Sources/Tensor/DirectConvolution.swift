import CKernels

/// The drivers of the C direct-convolution kernels (`reprise_shifted_convolution_f32` and
/// `reprise_shifted_weight_gradient_f32`, see CKernels.h), shared by the two grids that feed them:
/// the shifted grid of stride-1 convolutions (``ShiftedGrid``) and the phase grids of strided ones
/// (``PhaseGrid``). A grid holds each input channel's images one after another, every image
/// `pitch.image` elements long with rows `pitch.row` apart; a kernel tap is a constant offset into
/// it. Float32 only, on processors where `usesVectorKernels` says yes. A tile reads every channel at
/// the same positions, so a channel stride that is a large power of two (a dense channel-major
/// feature map at batch 64) maps those reads to the same cache sets and runs at under half speed;
/// both grids' channel strides include margins and are not (docs/performance.md#phase-grids).
enum DirectConvolution {
  /// How the rows of one channel lie in a grid: images `image` elements apart, rows `row` apart.
  struct Pitch {
    let image, row: Int
  }

  /// One group's weights `w(o, c, k) = weights[o·outputStride + c·channelStride + k]`, `taps` of
  /// them, in the kernel's tiles.
  static func packTaps(
    _ weights: UnsafePointer<Float>, outputs: Int, channels: Int, taps: Int, outputStride: Int, channelStride: Int
  ) -> [Float] {
    [Float](unsafeUninitializedCapacity: reprise_packed_taps_count(outputs, channels, taps)) { buffer, count in
      reprise_pack_taps_f32(weights, outputs, channels, taps, outputStride, channelStride, 1, buffer.baseAddress)
      count = buffer.count
    }
  }

  /// Every output row (n, y) of `batch` images of `outputs` planes of `height` x `width` at `output`
  /// (images `outputImageStride` apart, channels `outputChannelStride` apart), row (n, y) reading
  /// the grid from origin + n·pitch.image + y·pitch.row shifted by each offset. With `tapRanges`,
  /// row y's taps outside [tapRanges[2y], tapRanges[2y + 1]) read only zeros and are skipped (see
  /// ``ShiftedGrid/tapRanges(rows:reads:)``). The rows are split between threads; each output
  /// element is one sum in a fixed order whatever the split.
  static func convolveRows(
    grid: UnsafePointer<Float>, gridChannelStride: Int, channels: Int, packed: [Float], outputs: Int, offsets: [Int],
    tapRanges: [Int]? = nil, origin: Int, pitch: Pitch, batch: Int, height: Int, width: Int,
    into output: UnsafeMutablePointer<Float>, outputImageStride: Int, outputChannelStride: Int
  ) {
    let kk = offsets.count
    precondition(tapRanges.map { $0.count == 2 * height } ?? true, "internal: one tap range per output row")
    packed.withUnsafeBufferPointer { packed in
      offsets.withUnsafeBufferPointer { offsets in
        (tapRanges ?? []).withUnsafeBufferPointer { ranges in
          Parallel.forRanges(batch * height, costPerItem: outputs * channels * kk * width) { rows in
            reprise_shifted_convolution_f32(
              grid, gridChannelStride, channels, packed.baseAddress, outputs, offsets.baseAddress, kk,
              tapRanges == nil ? nil : ranges.baseAddress, rows.lowerBound, rows.count, height, width, pitch.image, pitch.row,
              origin, output, outputImageStride, outputChannelStride)
          }
        }
      }
    }
  }

  /// The output gradient `dy` [N, O, OH, OW] laid on a grid of `pitch` behind `reach` zeros: output
  /// (n, y, x) of channel o at o·extent + reach + n·pitch.image + y·pitch.row + x, zeros elsewhere;
  /// [O, extent]. The input gradient reads it shifted back by each tap's offset, and the zeros make
  /// every read that falls outside an output a zero. Generic: the shifted grid's matrix-product
  /// path (Float64, processors without AVX2) lays its output gradient out the same way.
  static func gradientGrid<T: TensorScalar>(_ dy: Tensor, _: T.Type, reach: Int, pitch: Pitch, extent: Int) -> Tensor {
    let (batch, channels, oh, ow) = (dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3])
    let grid = Tensor(uninitializedShape: [channels * extent], dtype: T.dtype)
    let layout = PlaneLayout(dy), src = dy.base(T.self), dst = grid.base(T.self)
    Parallel.forRanges(channels, costPerItem: extent) { range in
      for channel in range {
        // One pass over the row: zeros only between the copied output rows.
        let row = dst + channel * extent
        var written = 0
        for n in 0..<batch {
          for y in 0..<oh {
            let start = reach + n * pitch.image + y * pitch.row
            (row + written).update(repeating: 0, count: start - written)
            (row + start).update(from: src + n * layout.imageStride + channel * layout.channelStride + y * ow, count: ow)
            written = start + ow
          }
        }
        (row + written).update(repeating: 0, count: extent - written)
      }
    }
    withExtendedLifetime(dy) {}
    return grid
  }

  /// `y = conv(x, w)` of geometry `g` from its input laid on `grid` (one channel every
  /// `channelLength` elements, the taps at `offsets` from an output's position), into `y`:
  /// channel-major or a channel range of a channel-major tensor.
  static func forward(
    _ g: ConvolutionGeometry, grid: Tensor, channelLength: Int, offsets: [Int], tapRanges: [Int]? = nil, pitch: Pitch, weight: Tensor,
    into y: Tensor
  ) {
    let w = weight.contiguous(), (o, ci, kk) = (g.groupOutputs, g.groupInputs, offsets.count), layout = PlaneLayout(y)
    for group in 0..<g.groups {
      let packed = packTaps(w.base(Float.self) + group * o * ci * kk, outputs: o, channels: ci, taps: kk, outputStride: ci * kk, channelStride: kk)
      convolveRows(
        grid: grid.base(Float.self) + group * ci * channelLength, gridChannelStride: channelLength, channels: ci, packed: packed,
        outputs: o, offsets: offsets, tapRanges: tapRanges, origin: 0, pitch: pitch, batch: g.batch, height: g.outputHeight, width: g.outputWidth,
        into: y.base(Float.self) + group * o * layout.channelStride, outputImageStride: layout.imageStride,
        outputChannelStride: layout.channelStride)
    }
    withExtendedLifetime((grid, w, y)) {}
  }

  /// dW[o, c, k] = sum over output positions t of dy[o, t] · grid[c, t + offsets[k]] for geometry
  /// `g`, from the output gradient laid on `gradient` (one channel every `extent` elements, output
  /// position t at reach + t, the outputs' rows on `pitch`) and the input on `grid` (one channel
  /// every `channelLength`); pair (c, k) reads input channel c shifted by tap k, in dW's own order.
  static func weightGradient(
    _ g: ConvolutionGeometry, gradient: Tensor, extent: Int, reach: Int, grid: Tensor, channelLength: Int, offsets: [Int],
    pitch: Pitch, into dw: Tensor
  ) {
    let (o, ci, kk) = (g.groupOutputs, g.groupInputs, offsets.count)
    for group in 0..<g.groups {
      groupWeightGradient(
        g, gradient: gradient.base(Float.self) + group * o * extent + reach, gradientChannelStride: extent, outputs: o,
        grid: grid.base(Float.self), rows: (0..<ci * kk).map { (group * ci + $0 / kk) * channelLength + offsets[$0 % kk] },
        pitch: pitch, into: dw.base(Float.self) + group * o * ci * kk)
    }
    withExtendedLifetime((gradient, grid, dw)) {}
  }

  /// One group's weight gradient, dW[o·pairs + p] = sum over the output positions t (the rows of
  /// `g`'s output planes on `pitch`) of gradient[o·gradientChannelStride + t] · grid[rows[p] + t],
  /// into `dw` (outputs·pairs floats).
  ///
  /// The output rows are split into up to four pieces per thread, which the threads claim as they
  /// finish (a static split of one piece per thread kept the others waiting whenever one thread lost
  /// its core); each piece keeps its own sums (8 lanes each), added in piece and lane order, so the
  /// result depends on the thread count only. A piece zeroes its own sums, and the final additions
  /// are split between the threads too: neither is serial work.
  private static func groupWeightGradient(
    _ g: ConvolutionGeometry, gradient: UnsafePointer<Float>, gradientChannelStride: Int, outputs: Int, grid: UnsafePointer<Float>,
    rows: [Int], pitch: Pitch, into dw: UnsafeMutablePointer<Float>
  ) {
    let pairs = rows.count, (height, width) = (g.outputHeight, g.outputWidth), lines = g.batch * height
    // At least 2048 positions a piece: the sums of a piece cost outputs·pairs·8 zeroings and
    // additions against outputs·pairs·positions multiply-adds, under 1/256 of them.
    let pieces = max(1, min(4 * Parallel.threadCount, lines * width / 2048)), sums = outputs * pairs * 8
    let scratch = Tensor(uninitializedShape: [pieces * sums], dtype: .float32), partial = scratch.base(Float.self)
    rows.withUnsafeBufferPointer { rows in
      Parallel.run(pieces) { p in
        (partial + p * sums).update(repeating: 0, count: sums)
        let first = lines * p / pieces
        reprise_shifted_weight_gradient_f32(
          gradient, gradientChannelStride, outputs, grid, rows.baseAddress, pairs, first, lines * (p + 1) / pieces - first, height,
          width, pitch.image, pitch.row, partial + p * sums)
      }
    }
    Parallel.forRanges(outputs * pairs, costPerItem: pieces * 8) { range in
      for i in range {
        var total: Float = 0
        for p in 0..<pieces {
          let lanes = partial + p * sums + i * 8
          for lane in 0..<8 { total += lanes[lane] }
        }
        dw[i] = total
      }
    }
    withExtendedLifetime(scratch) {}
  }
}
