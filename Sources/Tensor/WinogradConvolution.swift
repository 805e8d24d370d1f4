import CKernels

/// 3x3 convolutions (stride 1, padding 1) by Winograd's F(2x2, 3x3): 16 multiply-adds per 2x2
/// block of outputs, channel and output where the direct kernels do 36 (Lavin and Gray 2016; the
/// transforms are in Winograd.c, the products in WinogradProducts.c).
///
/// The images are taken in chunks of about 256 tiles. For each chunk the input patches are
/// transformed, the 16 products of the transformed weights with them are computed by register
/// kernels that read the transforms' layout as it is, and the outputs are transformed back; chunks
/// run on the threads in parallel. Through OpenBLAS, whose packing and clearing cost more than the
/// products of narrow layers, this path only beat the direct kernels from 64 channels; with its own
/// products it does from 8 (docs/performance.md#winograd has the measurements behind
/// ``applies(to:)``).
///
/// Float32 only, on processors with AVX2; other scalars take the shifted grid. The results differ
/// from the direct sum by rounding only: the transforms' coefficients are 0, ±1 and ±1/2.
struct WinogradConvolution {
  let g: ConvolutionGeometry
  /// The path for scalars the transforms do not handle.
  let grid: ShiftedGrid
  /// Tiles per image, images per chunk and the length of a row of a chunk's transformed data (its
  /// tiles, rounded up).
  let tilesPerImage, imagesPerChunk, tileCount: Int

  init(_ g: ConvolutionGeometry) {
    self.g = g
    grid = ShiftedGrid(g)
    tilesPerImage = reprise_winograd_tiles(g.height, g.width)
    // About 256 tiles (whole images) to a chunk, and at most a quarter of the batch: a chunk's
    // transformed patches take 4 times its share of the input, so with small batches they stay
    // within the input's size (the padded copy the shifted grid would make), and the threads have
    // at least 4 chunks to share.
    imagesPerChunk = max(1, min(g.batch / 4, 256 / tilesPerImage))
    // Rows a multiple of 8 floats plus 8 more: rows a power of two apart (256 tiles) fall into a
    // quarter of the L1 cache's sets, and the products, which read a column block down 16 to 384
    // rows, then evict their own operands.
    tileCount = (imagesPerChunk * tilesPerImage + 7) / 8 * 8 + 8
  }

  /// Whether this path is the faster one: 3x3, stride 1, padding 1, no dilation or groups, at least
  /// 8 input and output channels and planes of 8 x 8 or more.
  static func applies(to g: ConvolutionGeometry) -> Bool {
    g.kernelHeight == 3 && g.kernelWidth == 3 && g.stride == 1 && g.padding == 1 && g.dilation == 1 && g.groups == 1
      && min(g.inputChannels, g.outputChannels) >= 8 && min(g.height, g.width) >= 8
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

  /// The transformed weights [16][outputs][channels], or, `reversed`, those of the input gradient's
  /// convolution (the output gradient convolved with each filter rotated by 180°, from outputs to
  /// channels): [16][channels][outputs].
  private func transformedWeights(_ w: Tensor, reversed: Bool = false) -> Tensor {
    let u = Tensor(uninitializedShape: [16 * g.outputChannels * g.inputChannels], dtype: .float32)
    reprise_winograd_weights_f32(w.base(Float.self), g.outputChannels, g.inputChannels, reversed ? 1 : 0, u.base(Float.self))
    return u
  }

  /// Whether the transforms handle scalars of type `T`.
  private func handles<T: TensorScalar>(_: T.Type) -> Bool { usesVectorKernels(T.self) }

  private var scratchCount: Int { reprise_winograd_scratch_count(g.height, g.width) }

  /// `y = conv(x, w)`; `x` and `y` have dense planes, `w` is contiguous. With `normalizing`, the
  /// convolution is that of max(x · scale + shift, 0) per channel, applied as the input is
  /// transformed (the pre-activation unit's batch normalisation and ReLU, bit for bit).
  func forward<T: TensorScalar>(
    _ x: Tensor, _ w: Tensor, into y: Tensor, _: T.Type, normalizing affine: (scale: [T], shift: [T])? = nil
  ) {
    guard handles(T.self) else { return grid.forward(x, w, into: y, T.self, normalizing: affine) }
    let (c, o, t) = (g.inputChannels, g.outputChannels, tileCount)
    let u = transformedWeights(w), pu = u.base(Float.self)
    let px = floats(x.base(T.self)), py = floats(y.base(T.self)), xl = PlaneLayout(x), yl = PlaneLayout(y)
    forEachChunk(pieces: 4 * Parallel.threadCount, sizes: [16 * c * t, 16 * o * t, scratchCount]) { _, first, images, b in
      let (v, m, scratch) = (b[0], b[1], b[2])
      transformInput(px, xl, first: first, images: images, normalizing: affine, into: v, scratch)
      reprise_winograd_products_f32(pu, c, 1, o, c, v, m, images * tilesPerImage, t)
      reprise_winograd_output_f32(m, o, images, g.height, g.width, t, py + first * yl.imageStride, yl.channelStride, yl.imageStride, scratch)
    }
    withExtendedLifetime(u) {}
  }

  /// `dx = conv_transpose(dy, w)`; `dy` and `dx` have dense planes.
  func backwardInput<T: TensorScalar>(_ dy: Tensor, _ w: Tensor, into dx: Tensor, _: T.Type) {
    guard handles(T.self) else { return grid.backwardInput(dy, w, into: dx, T.self) }
    let (c, o, t) = (g.inputChannels, g.outputChannels, tileCount)
    let u = transformedWeights(w, reversed: true), pu = u.base(Float.self)
    forEachChunk(pieces: 4 * Parallel.threadCount, sizes: [16 * c * t, 16 * o * t, scratchCount]) { _, first, images, b in
      inputGradient(dy, pu, first: first, images: images, into: dx, b[1], b[0], b[2])
    }
    withExtendedLifetime(u) {}
  }

  /// `dw = dy ⋆ x`; `dy` and `x` have dense planes, `dw` is contiguous.
  func backwardWeight<T: TensorScalar>(_ dy: Tensor, _ x: Tensor, into dw: Tensor, _: T.Type) {
    guard handles(T.self) else { return grid.backwardWeight(dy, x, into: dw, T.self) }
    gradients(dy, x, nil, normalizing: Optional<(scale: [T], shift: [T])>.none, inputGradient: nil, weightGradient: dw)
  }

  /// Both gradients, chunk by chunk while each chunk of the output gradient is in cache; the same
  /// results as ``backwardInput(_:_:into:_:)`` and ``backwardWeight(_:_:into:_:)``. With
  /// `normalizing`, `x` is normalised as in ``forward(_:_:into:_:normalizing:)`` and `dx` is the
  /// normalised map's gradient.
  func backward<T: TensorScalar>(
    _ dy: Tensor, _ x: Tensor, _ w: Tensor, inputGradient dx: Tensor, weightGradient dw: Tensor, _: T.Type,
    normalizing affine: (scale: [T], shift: [T])? = nil
  ) {
    guard handles(T.self) else {
      grid.backwardInput(dy, w, into: dx, T.self)
      return grid.backwardWeight(dy, affine.map { normalized(x, $0) } ?? x, into: dw, T.self)
    }
    gradients(dy, x, w, normalizing: affine, inputGradient: dx, weightGradient: dw)
  }

  /// max(x · scale + shift, 0) per channel as a tensor of its own, for the scalars the transforms do
  /// not handle; the same expression as ``ShiftedGrid/padded(_:_:normalizing:)``'s.
  private func normalized<T: TensorScalar>(_ x: Tensor, _ affine: (scale: [T], shift: [T])) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape, dtype: T.dtype)
    let layout = PlaneLayout(x), plane = g.height * g.width, px = x.base(T.self), po = out.base(T.self)
    for n in 0..<g.batch {
      for c in 0..<g.inputChannels {
        let from = px + n * layout.imageStride + c * layout.channelStride, to = po + (n * g.inputChannels + c) * plane
        let (scale, shift) = (affine.scale[c], affine.shift[c])
        for i in 0..<plane { to[i] = Swift.max(from[i] * scale + shift, 0) }
      }
    }
    return out
  }

  /// One chunk's input patches transformed into `v`, normalised on the way with `affine`.
  private func transformInput<T: TensorScalar>(
    _ px: UnsafeMutablePointer<Float>, _ xl: PlaneLayout, first: Int, images: Int, normalizing affine: (scale: [T], shift: [T])?,
    into v: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>
  ) {
    func run(_ scale: UnsafePointer<Float>?, _ shift: UnsafePointer<Float>?) {
      reprise_winograd_input_f32(
        px + first * xl.imageStride, xl.channelStride, xl.imageStride, g.inputChannels, images, g.height, g.width, scale, shift, v,
        tileCount, scratch)
    }
    guard let affine else { return run(nil, nil) }
    affine.scale.withUnsafeBufferPointer { scale in
      affine.shift.withUnsafeBufferPointer { shift in run(floats(scale.baseAddress!), floats(shift.baseAddress!)) }
    }
  }

  /// The weight gradient, and with `w` the input gradient too, of Float32 tensors. Each thread takes
  /// a fixed share of the chunks and sums their weight-gradient products (its share's first product
  /// overwrites the sums, so nothing zeroes them first), and the shares are added in order, split
  /// between the threads, so the result depends on the thread count only and no part of it is serial.
  private func gradients<T: TensorScalar>(
    _ dy: Tensor, _ x: Tensor, _ w: Tensor?, normalizing affine: (scale: [T], shift: [T])?, inputGradient dx: Tensor?,
    weightGradient dw: Tensor
  ) {
    let (c, o, t) = (g.inputChannels, g.outputChannels, tileCount), size = 16 * o * c
    let pieces = max(1, min(Parallel.threadCount, chunks))
    let sums = Tensor(uninitializedShape: [pieces * size], dtype: .float32), ps = sums.base(Float.self)
    let u = w.map { transformedWeights($0, reversed: true) }, pu = u?.base(Float.self)
    let pdy = dy.base(Float.self), px = x.base(Float.self), gl = PlaneLayout(dy), xl = PlaneLayout(x)
    forEachChunk(pieces: pieces, sizes: [16 * c * t, 16 * o * t, scratchCount]) { p, first, images, b in
      let (v, m, scratch) = (b[0], b[1], b[2])
      if let pu, let dx {
        inputGradient(dy, pu, first: first, images: images, into: dx, m, v, scratch)
      }
      reprise_winograd_output_gradient_f32(
        pdy + first * gl.imageStride, gl.channelStride, gl.imageStride, o, images, g.height, g.width, m, t, scratch)
      transformInput(px, xl, first: first, images: images, normalizing: affine, into: v, scratch)
      let accumulate: Int32 = first == chunks * p / pieces * imagesPerChunk ? 0 : 1
      reprise_winograd_transposed_products_f32(m, o, v, c, images * tilesPerImage, t, ps + p * size, accumulate)
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

  /// One chunk's input gradient: the output gradient's patches transformed into `patches`
  /// [16][outputs][tiles], their products with the reversed weights `u` into `products`
  /// [16][channels][tiles], transformed back into `dx`.
  private func inputGradient(
    _ dy: Tensor, _ u: UnsafeMutablePointer<Float>, first: Int, images: Int, into dx: Tensor, _ patches: UnsafeMutablePointer<Float>,
    _ products: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>
  ) {
    let (c, o, t) = (g.inputChannels, g.outputChannels, tileCount), gl = PlaneLayout(dy), xl = PlaneLayout(dx)
    reprise_winograd_input_f32(
      dy.base(Float.self) + first * gl.imageStride, gl.channelStride, gl.imageStride, o, images, g.height, g.width, nil, nil, patches, t,
      scratch)
    reprise_winograd_products_f32(u, o, 1, c, o, patches, products, images * tilesPerImage, t)
    reprise_winograd_output_f32(
      products, c, images, g.height, g.width, t, dx.base(Float.self) + first * xl.imageStride, xl.channelStride, xl.imageStride, scratch)
  }
}
