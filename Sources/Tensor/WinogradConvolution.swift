import CKernels
import COpenBLAS

/// Wide 3x3 convolutions (stride 1, padding 1) by Winograd's F(2x2, 3x3): 16 multiply-adds per 2x2
/// block of outputs, channel and output where the direct kernels do 36 (Lavin and Gray 2016; the
/// transforms are in Winograd.c).
///
/// The images are taken in chunks of about 256 tiles. For each chunk the input patches are
/// transformed, the 16 products of the transformed weights with them are single-threaded OpenBLAS
/// calls, and the outputs are transformed back; chunks run on the threads in parallel. The products
/// are where the time goes once a layer has 64 channels or more; for narrower layers the
/// transforms, which read and write 4 times the layer's data, cost more than the multiply-adds they
/// save, and the direct kernels stay faster (docs/performance.md#winograd has the measurements
/// behind ``applies(to:)``).
///
/// Float32 only, on processors with AVX2; other scalars take the shifted grid. The results differ
/// from the direct sum by rounding only: the transforms' coefficients are 0, ±1 and ±1/2.
struct WinogradConvolution {
  let g: ConvolutionGeometry
  /// The path for scalars the transforms do not handle.
  let grid: ShiftedGrid
  /// Tiles per image, images per chunk and the chunk's tiles (the products' width).
  let tilesPerImage, imagesPerChunk, tileCount: Int

  init(_ g: ConvolutionGeometry) {
    self.g = g
    grid = ShiftedGrid(g)
    tilesPerImage = reprise_winograd_tiles(g.height, g.width)
    imagesPerChunk = max(1, min(g.batch, 256 / tilesPerImage))
    tileCount = imagesPerChunk * tilesPerImage
  }

  /// Whether this path is the faster one: 3x3, stride 1, padding 1, no dilation or groups, at least
  /// 64 input and output channels and planes of 8 x 8 or more.
  static func applies(to g: ConvolutionGeometry) -> Bool {
    g.kernelHeight == 3 && g.kernelWidth == 3 && g.stride == 1 && g.padding == 1 && g.dilation == 1 && g.groups == 1
      && min(g.inputChannels, g.outputChannels) >= 64 && min(g.height, g.width) >= 8
  }

  private var chunks: Int { (g.batch + imagesPerChunk - 1) / imagesPerChunk }

  /// Runs `body(piece, firstImage, images, buffers)` for every chunk: the chunks split into up to
  /// `pieces` contiguous shares, claimed by the threads as they finish, each piece with its own
  /// scratch buffers of `sizes` floats.
  private func forEachChunk(
    pieces: Int, sizes: [Int], _ body: (_ piece: Int, _ first: Int, _ images: Int, _ buffers: [UnsafeMutablePointer<Float>]) -> Void
  ) {
    let chunks = self.chunks, pieces = max(1, min(pieces, chunks))
    Parallel.run(pieces) { p in
      let storage = sizes.map { Tensor(uninitializedShape: [$0], dtype: .float32) }
      let buffers = storage.map { $0.base(Float.self) }
      for chunk in chunks * p / pieces..<chunks * (p + 1) / pieces {
        let first = chunk * imagesPerChunk
        body(p, first, min(imagesPerChunk, g.batch - first), buffers)
      }
      withExtendedLifetime(storage) {}
    }
  }

  /// The transformed weights [16][outputs][channels].
  private func transformedWeights(_ w: Tensor) -> Tensor {
    let u = Tensor(uninitializedShape: [16 * g.outputChannels * g.inputChannels], dtype: .float32)
    reprise_winograd_weights_f32(w.base(Float.self), g.outputChannels, g.inputChannels, u.base(Float.self))
    return u
  }

  /// Whether the transforms handle scalars of type `T`.
  private func handles<T: TensorScalar>(_: T.Type) -> Bool { usesVectorKernels(T.self) }

  private var scratchCount: Int { reprise_winograd_scratch_count(g.height, g.width) }

  /// `y = conv(x, w)`; `x` and `y` have dense planes, `w` is contiguous.
  func forward<T: TensorScalar>(_ x: Tensor, _ w: Tensor, into y: Tensor, _: T.Type) {
    guard handles(T.self) else { return grid.forward(x, w, into: y, T.self) }
    let (c, o, t) = (g.inputChannels, g.outputChannels, tileCount)
    let u = transformedWeights(w), pu = u.base(Float.self)
    let px = floats(x.base(T.self)), py = floats(y.base(T.self)), xl = PlaneLayout(x), yl = PlaneLayout(y)
    forEachChunk(pieces: 4 * Parallel.threadCount, sizes: [16 * c * t, 16 * o * t, scratchCount]) { _, first, images, b in
      let (v, m, scratch) = (b[0], b[1], b[2])
      reprise_winograd_input_f32(px + first * xl.imageStride, xl.channelStride, xl.imageStride, c, images, g.height, g.width, v, t, scratch)
      for xi in 0..<16 {
        cblas_sgemm(
          CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(o), blasint(images * tilesPerImage), blasint(c), 1, pu + xi * o * c,
          blasint(c), v + xi * c * t, blasint(t), 0, m + xi * o * t, blasint(t))
      }
      reprise_winograd_output_f32(m, o, images, g.height, g.width, t, py + first * yl.imageStride, yl.channelStride, yl.imageStride, scratch)
    }
    withExtendedLifetime(u) {}
  }

  /// `dx = conv_transpose(dy, w)`; `dy` and `dx` have dense planes.
  func backwardInput<T: TensorScalar>(_ dy: Tensor, _ w: Tensor, into dx: Tensor, _: T.Type) {
    guard handles(T.self) else { return grid.backwardInput(dy, w, into: dx, T.self) }
    let (c, o, t) = (g.inputChannels, g.outputChannels, tileCount)
    let u = transformedWeights(w), pu = u.base(Float.self), pdy = floats(dy.base(T.self)), gl = PlaneLayout(dy)
    forEachChunk(pieces: 4 * Parallel.threadCount, sizes: [16 * c * t, 16 * o * t, scratchCount]) { _, first, images, b in
      let (v, m, scratch) = (b[0], b[1], b[2])
      reprise_winograd_output_gradient_f32(
        pdy + first * gl.imageStride, gl.channelStride, gl.imageStride, o, images, g.height, g.width, m, t, scratch)
      inputGradient(m, pu, first: first, images: images, into: dx, v, scratch)
    }
    withExtendedLifetime(u) {}
  }

  /// `dw = dy ⋆ x`; `dy` and `x` have dense planes, `dw` is contiguous.
  func backwardWeight<T: TensorScalar>(_ dy: Tensor, _ x: Tensor, into dw: Tensor, _: T.Type) {
    guard handles(T.self) else { return grid.backwardWeight(dy, x, into: dw, T.self) }
    gradients(dy, x, nil, inputGradient: nil, weightGradient: dw)
  }

  /// Both gradients, the output gradient's tiles transformed once for both; the same results as
  /// ``backwardInput(_:_:into:_:)`` and ``backwardWeight(_:_:into:_:)``.
  func backward<T: TensorScalar>(_ dy: Tensor, _ x: Tensor, _ w: Tensor, inputGradient dx: Tensor, weightGradient dw: Tensor, _: T.Type) {
    guard handles(T.self) else {
      grid.backwardInput(dy, w, into: dx, T.self)
      return grid.backwardWeight(dy, x, into: dw, T.self)
    }
    gradients(dy, x, w, inputGradient: dx, weightGradient: dw)
  }

  /// The weight gradient, and with `w` the input gradient too, of Float32 tensors. Each thread takes
  /// a fixed share of the chunks and sums their weight-gradient products (its share's first product
  /// overwrites the sums, so nothing zeroes them first), and the shares are added in order, split
  /// between the threads, so the result depends on the thread count only and no part of it is serial.
  private func gradients(_ dy: Tensor, _ x: Tensor, _ w: Tensor?, inputGradient dx: Tensor?, weightGradient dw: Tensor) {
    let (c, o, t) = (g.inputChannels, g.outputChannels, tileCount), size = 16 * o * c
    let pieces = max(1, min(Parallel.threadCount, chunks))
    let sums = Tensor(uninitializedShape: [pieces * size], dtype: .float32), ps = sums.base(Float.self)
    let u = w.map(transformedWeights), pu = u?.base(Float.self)
    let pdy = dy.base(Float.self), px = x.base(Float.self), gl = PlaneLayout(dy), xl = PlaneLayout(x)
    forEachChunk(pieces: pieces, sizes: [16 * c * t, 16 * o * t, scratchCount]) { p, first, images, b in
      let (v, m, scratch) = (b[0], b[1], b[2])
      reprise_winograd_output_gradient_f32(
        pdy + first * gl.imageStride, gl.channelStride, gl.imageStride, o, images, g.height, g.width, m, t, scratch)
      if let pu, let dx {
        inputGradient(m, pu, first: first, images: images, into: dx, v, scratch)
      }
      reprise_winograd_input_f32(px + first * xl.imageStride, xl.channelStride, xl.imageStride, c, images, g.height, g.width, v, t, scratch)
      let beta: Float = first == chunks * p / pieces * imagesPerChunk ? 0 : 1
      for xi in 0..<16 {
        cblas_sgemm(
          CblasRowMajor, CblasNoTrans, CblasTrans, blasint(o), blasint(c), blasint(images * tilesPerImage), 1, m + xi * o * t,
          blasint(t), v + xi * c * t, blasint(t), beta, ps + p * size + xi * o * c, blasint(c))
      }
    }
    if pieces > 1 {
      Parallel.forRanges(size, costPerItem: pieces) { range in
        for p in 1..<pieces {
          let part = ps + p * size
          for i in range { ps[i] += part[i] }
        }
      }
    }
    reprise_winograd_weight_gradient_f32(ps, o, c, dw.base(Float.self))
    withExtendedLifetime((sums, u)) {}
  }

  /// One chunk's input gradient from its transformed output gradient `m`: the products with the
  /// transformed weights `u` (transposed) into `v`, transformed back into `dx`.
  private func inputGradient(
    _ m: UnsafeMutablePointer<Float>, _ u: UnsafeMutablePointer<Float>, first: Int, images: Int, into dx: Tensor,
    _ v: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>
  ) {
    let (c, o, t) = (g.inputChannels, g.outputChannels, tileCount), xl = PlaneLayout(dx)
    for xi in 0..<16 {
      cblas_sgemm(
        CblasRowMajor, CblasTrans, CblasNoTrans, blasint(c), blasint(images * tilesPerImage), blasint(o), 1, u + xi * o * c,
        blasint(c), m + xi * o * t, blasint(t), 0, v + xi * c * t, blasint(t))
    }
    reprise_winograd_input_gradient_f32(
      v, c, images, g.height, g.width, t, dx.base(Float.self) + first * xl.imageStride, xl.channelStride, xl.imageStride, scratch)
  }
}
