import CKernels

/// 3x3 convolutions (stride 1, padding 1) by Winograd's minimal filtering (Lavin and Gray 2016; the
/// transforms are in Winograd.c and WinogradF4.h, the products in WinogradProducts.c): F(2x2, 3x3)
/// does 16 multiply-adds per 2x2 block of outputs, channel and output where the direct kernels do
/// 36, F(4x4, 3x3) 36 per 4x4 block where they do 144.
///
/// The images are taken in chunks of whole images. For each chunk the input patches are
/// transformed, the products of the transformed weights with them are computed by register kernels
/// that read the transforms' layout as it is, and the outputs are transformed back; chunks run on
/// the threads in parallel. Through OpenBLAS, whose packing and clearing cost more than the
/// products of narrow layers, this path only beat the direct kernels from 64 channels; with its own
/// products it does from 8 (docs/performance.md#winograd has the measurements behind
/// ``applies(to:)``).
///
/// The forward pass takes F(2x2, 3x3), whose transforms' coefficients are 0, ±1 and ±1/2, so that
/// its results differ from the direct sum's by little more than rounding; the gradients take the
/// faster F(4x4, 3x3) where the planes allow it (see ``forwardTiling``). Float32 only, on
/// processors with AVX2; other scalars take the shifted grid.
struct WinogradConvolution {
  let g: ConvolutionGeometry
  /// The path for scalars the transforms do not handle.
  let grid: ShiftedGrid
  /// The forward pass's tiles: F(2x2, 3x3), whose rounding is close to the direct sum's. The
  /// forward pass decides which way every ReLU and max pool goes, and the larger errors of F(4x4,
  /// 3x3) flip many more of those decisions than Float32 rounding does; each flip moves a whole
  /// term of the gradient (docs/numerics.md#winograd).
  var forwardTiling: WinogradTiling
  /// The gradients' tiles: F(4x4, 3x3) where the planes allow it. Its errors, a few parts in a
  /// million of the largest value, decide nothing: they reach the gradients as rounding does.
  var gradientTiling: WinogradTiling
  /// Whether the gradients are split between the threads within each chunk, by transform position
  /// and channels, rather than by images (``splitsByPosition(_:_:)``).
  var splitsGradientsByPosition: Bool

  init(_ g: ConvolutionGeometry) {
    self.g = g
    grid = ShiftedGrid(g)
    forwardTiling = WinogradTiling.forward(g)
    gradientTiling = WinogradTiling(g, tile: WinogradTiling.largestTile(g))
    splitsGradientsByPosition = Self.splitsByPosition(g, gradientTiling)
  }

  /// Whether this path is the faster one: 3x3, stride 1, padding 1, no dilation or groups, at least
  /// 8 input and output channels and planes of 8 x 8 or more.
  static func applies(to g: ConvolutionGeometry) -> Bool {
    g.kernelHeight == 3 && g.kernelWidth == 3 && g.stride == 1 && g.padding == 1 && g.dilation == 1 && g.groups == 1
      && min(g.inputChannels, g.outputChannels) >= 8 && min(g.height, g.width) >= 8
  }

  /// Runs `body(piece, firstImage, images, buffers)` for every chunk: the batch split into shares
  /// of images, share `p` from image `bounds[p]` to `bounds[p + 1]` (by default as many equal
  /// shares as `tiling` has chunks), each cut into chunks of at most `tiling.imagesPerChunk`
  /// images, each thread taking its own shares first (the first thread the first images) and then
  /// helping with the others' (`Parallel.run(_:byThread:)`; a share is the unit whose chunks one
  /// thread takes in order), each thread with its own
  /// buffers for a chunk's transformed data of `rows` channels or outputs (the most either step of
  /// a chunk needs) and scratch space, and with `panels`, room for the weight gradient's panel.
  private func forEachChunk(
    _ tiling: WinogradTiling, bounds: [Int]? = nil, rows: (Int, Int), panels: Bool = false,
    _ body: (_ piece: Int, _ first: Int, _ images: Int, _ buffers: [UnsafeMutablePointer<Float>]) -> Void
  ) {
    let chunks = tiling.chunks(g.batch), bounds = bounds ?? (0...chunks).map { g.batch * $0 / chunks }
    let sizes =
      [tiling.size(rows: rows.0), tiling.size(rows: rows.1), reprise_winograd_scratch_count(g.height, g.width, tiling.tile)]
      + (panels ? [reprise_winograd_panel_count(g.inputChannels, tiling.tileCount)] : [])
    // Each slot is written by its own thread only, when that thread takes its first share.
    typealias Scratch = (tensors: [Tensor], buffers: [UnsafeMutablePointer<Float>])
    let storage = UnsafeMutableBufferPointer<Scratch?>.allocate(capacity: Parallel.threadCount)
    storage.initialize(repeating: nil)
    defer {
      _ = storage.deinitialize()
      storage.deallocate()
    }
    Parallel.run(bounds.count - 1, byThread: { p, thread in
      if storage[thread] == nil {
        let tensors = sizes.map { Tensor(uninitializedShape: [$0], dtype: .float32) }
        storage[thread] = (tensors, tensors.map { $0.base(Float.self) })
      }
      let buffers = storage[thread]!.buffers
      // Shares are cut by images and then into as few chunks of equal size as fit, so that they are
      // equal where whole chunks would not divide among them: ShakeNet's 16x16 gradients at batch
      // 32 take chunks of up to 7 images in two shares, 14 and 18 images cut at chunk boundaries.
      let start = bounds[p], images = bounds[p + 1] - start
      let count = (images + tiling.imagesPerChunk - 1) / tiling.imagesPerChunk
      for k in 0..<count {
        let first = start + images * k / count
        body(p, first, start + images * (k + 1) / count - first, buffers)
      }
    })
  }

  /// The transformed weights [P][outputs][channels], or, `reversed`, those of the input gradient's
  /// convolution (the output gradient convolved with each filter rotated by 180°, from outputs to
  /// channels): [P][channels][outputs]; in the products' panels of rows
  /// (`reprise_winograd_weights_f32`).
  func transformedWeights(_ w: Tensor, reversed: Bool = false, _ tiling: WinogradTiling) -> Tensor {
    let (rows, columns) = reversed ? (g.inputChannels, g.outputChannels) : (g.outputChannels, g.inputChannels)
    let u = Tensor(uninitializedShape: [reprise_winograd_weight_count(rows, columns, tiling.tile)], dtype: .float32)
    let pw = w.base(Float.self), pu = u.base(Float.self)
    // Panels split between the threads, as the weight gradient's last transform is: on one thread
    // (0.3-0.6% of a ResNet's samples) the others wait through it, a serial part at any core count.
    let panelRows = Int(REPRISE_WINOGRAD_PANEL_ROWS)
    Parallel.forRanges((rows + panelRows - 1) / panelRows, costPerItem: 4 * panelRows * columns * tiling.positions) { range in
      reprise_winograd_weights_f32(
        pw, g.outputChannels, g.inputChannels, reversed ? 1 : 0, tiling.tile, range.lowerBound, range.count, pu)
    }
    withExtendedLifetime(w) {}
    return u
  }

  /// `y = conv(x, w)`; `x` and `y` have dense planes, `w` is contiguous. With `normalizing`, the
  /// convolution is that of max(x · scale + shift, 0) per channel, applied as the input is
  /// transformed (the pre-activation unit's batch normalisation and ReLU, bit for bit). With
  /// `scalingPlanes` ([N][C], a channel dropout's mask; only where ``handles(_:)``), that of x · s
  /// with one factor per plane, applied the same way: bit for bit the convolution of the product,
  /// without the product.
  func forward<T: TensorScalar>(
    _ x: Tensor, _ w: Tensor, into y: Tensor, _: T.Type, normalizing affine: (scale: [T], shift: [T])? = nil,
    scalingPlanes planeScale: UnsafePointer<Float>? = nil
  ) {
    guard Self.handles(T.self) else {
      precondition(planeScale == nil, "internal: plane factors for a convolution the transforms do not handle")
      return grid.forward(x, w, into: y, T.self, normalizing: affine)
    }
    let (c, o, tiling) = (g.inputChannels, g.outputChannels, forwardTiling)
    let u = transformedWeights(w, tiling), pu = u.base(Float.self)
    forEachChunk(tiling, rows: tiling.blockSizes(c, o)) { _, first, images, b in
      convolveChunk(
        x, from: c, pu, to: o, normalizing: affine, scalingPlanes: planeScale, tiling, first: first, images: images, into: y, b[0],
        b[1], b[2])
    }
    withExtendedLifetime(u) {}
  }

  /// `dx = conv_transpose(dy, w)`; `dy` and `dx` have dense planes.
  func backwardInput<T: TensorScalar>(_ dy: Tensor, _ w: Tensor, into dx: Tensor, _: T.Type) {
    guard Self.handles(T.self) else { return grid.backwardInput(dy, w, into: dx, T.self) }
    let (c, o, tiling) = (g.inputChannels, g.outputChannels, gradientTiling)
    let u = transformedWeights(w, reversed: true, tiling), pu = u.base(Float.self), plain: (scale: [T], shift: [T])? = nil
    forEachChunk(tiling, rows: tiling.blockSizes(c, o)) { _, first, images, b in
      convolveChunk(dy, from: o, pu, to: c, normalizing: plain, tiling, first: first, images: images, into: dx, b[1], b[0], b[2])
    }
    withExtendedLifetime(u) {}
  }

  /// `dw = dy ⋆ x`; `dy` and `x` have dense planes, `dw` is contiguous.
  func backwardWeight<T: TensorScalar>(_ dy: Tensor, _ x: Tensor, into dw: Tensor, _: T.Type) {
    guard Self.handles(T.self) else { return grid.backwardWeight(dy, x, into: dw, T.self) }
    gradients(dy, x, nil, normalizing: Optional<(scale: [T], shift: [T])>.none, inputGradient: nil, weightGradient: dw)
  }

  /// The gradients of ``forward(_:_:into:_:normalizing:scalingPlanes:)``, with plane factors or
  /// without (nil): the weight gradient into `dw` and the input gradient, s · conv_transpose(dy,
  /// w), to `dx`, written or added plane by plane.
  func backward(
    _ dy: Tensor, _ x: Tensor, _ w: Tensor, scalingPlanes planeScale: UnsafePointer<Float>?, inputGradient dx: InputGradientTarget,
    weightGradient dw: Tensor
  ) {
    gradients(
      dy, x, w, normalizing: Optional<(scale: [Float], shift: [Float])>.none, scalingPlanes: planeScale, inputGradient: dx,
      weightGradient: dw)
  }

  /// Whether the transforms handle scalars of type `T`: Float32 on processors with AVX2.
  static func handles<T: TensorScalar>(_: T.Type) -> Bool { usesVectorKernels(T.self) }

  /// Both gradients, chunk by chunk while each chunk of the output gradient is in cache; the same
  /// results as ``backwardInput(_:_:into:_:)`` and ``backwardWeight(_:_:into:_:)``. With
  /// `normalizing`, `x` is normalised as in ``forward(_:_:into:_:normalizing:)`` and `dx` is the
  /// normalised map's gradient.
  func backward<T: TensorScalar>(
    _ dy: Tensor, _ x: Tensor, _ w: Tensor, inputGradient dx: Tensor, weightGradient dw: Tensor, _: T.Type,
    normalizing affine: (scale: [T], shift: [T])? = nil
  ) {
    guard Self.handles(T.self) else {
      grid.backwardInput(dy, w, into: dx, T.self)
      return grid.backwardWeight(dy, x, into: dw, T.self, normalizing: affine)
    }
    gradients(dy, x, w, normalizing: affine, inputGradient: InputGradientTarget(dx), weightGradient: dw)
  }

  /// One chunk of the convolution of `source` (`from` channels) with transformed weights `u`
  /// [P][to][from] (in panels): the source's patches transformed into `patches` [P][from][tiles], normalised or
  /// scaled on the way (`affine`, `planeScale`), their products with `u` into `products`
  /// [P][to][tiles], transformed back by `output(products, rows)` for each block of rows. Where one
  /// side is wide and the other narrow (see ``WinogradTiling/blocks(of:facing:)``), either the
  /// source's channels are taken a block at a time, each block's products added to the last's, or
  /// the products' rows are computed and transformed back a block at a time. The forward pass runs
  /// it on the input; the input gradient on the output gradient, with the reversed weights.
  private func convolveChunk<T: TensorScalar>(
    _ source: Tensor, from: Int, _ u: UnsafeMutablePointer<Float>, to: Int, normalizing affine: (scale: [T], shift: [T])?,
    scalingPlanes planeScale: UnsafePointer<Float>? = nil, _ tiling: WinogradTiling, first: Int, images: Int,
    _ patches: UnsafeMutablePointer<Float>, _ products: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>,
    output: (_ products: UnsafeMutablePointer<Float>, _ rows: Range<Int>) -> Void
  ) {
    let columns = tiling.columns(images), sourceBlocks = tiling.blocks(of: from, facing: to)
    if sourceBlocks.count > 1 {
      for block in sourceBlocks {
        transformPatches(
          source, channels: block, first: first, images: images, normalizing: affine, scalingPlanes: planeScale, tiling,
          into: patches, scratch)
        // Each block's products added to the last's: the sums run over the channels in order
        // either way, so the bits are those of one product over all of them.
        reprise_winograd_products_f32(
          tiling.positions, u, to, from, 0, to, block.lowerBound, block.count, patches, products, columns, tiling.tileCount,
          block.lowerBound == 0 ? 0 : 1)
      }
      return output(products, 0..<to)
    }
    transformPatches(
      source, channels: 0..<from, first: first, images: images, normalizing: affine, scalingPlanes: planeScale, tiling,
      into: patches, scratch)
    for rows in tiling.blocks(of: to, facing: from) {
      reprise_winograd_products_f32(
        tiling.positions, u, to, from, rows.lowerBound, rows.count, 0, from, patches, products, columns, tiling.tileCount, 0)
      output(products, rows)
    }
  }

  /// ``convolveChunk(_:from:_:to:normalizing:scalingPlanes:_:first:images:_:_:_:output:)`` into the
  /// chunk's images of `destination`.
  private func convolveChunk<T: TensorScalar>(
    _ source: Tensor, from: Int, _ u: UnsafeMutablePointer<Float>, to: Int, normalizing affine: (scale: [T], shift: [T])?,
    scalingPlanes planeScale: UnsafePointer<Float>? = nil, _ tiling: WinogradTiling, first: Int, images: Int,
    into destination: Tensor, _ patches: UnsafeMutablePointer<Float>, _ products: UnsafeMutablePointer<Float>,
    _ scratch: UnsafeMutablePointer<Float>
  ) {
    convolveChunk(
      source, from: from, u, to: to, normalizing: affine, scalingPlanes: planeScale, tiling, first: first, images: images,
      patches, products, scratch
    ) { products, rows in
      transformBack(products, rows: rows, into: destination, tiling, first: first, images: images, scratch)
    }
  }

  /// Channels `rows` of one chunk transformed back from their products (matrices of those rows
  /// alone) into the chunk's images of `destination`.
  private func transformBack(
    _ products: UnsafeMutablePointer<Float>, rows: Range<Int>, into destination: Tensor, _ tiling: WinogradTiling, first: Int,
    images: Int, _ scratch: UnsafeMutablePointer<Float>
  ) {
    let layout = PlaneLayout(destination)
    reprise_winograd_output_f32(
      products, rows.count, images, g.height, g.width, tiling.tile, tiling.tileCount,
      destination.base(Float.self) + first * layout.imageStride + rows.lowerBound * layout.channelStride, layout.channelStride,
      layout.imageStride, scratch)
  }

  /// The patches of channels `range` of one chunk of `source` transformed into `patches`, normalised
  /// on the way with `affine` or scaled with `planeScale`: matrices of their own, or, with `stream`,
  /// rows of matrices that far apart.
  func transformPatches<T: TensorScalar>(
    _ source: Tensor, channels range: Range<Int>, first: Int, images: Int, normalizing affine: (scale: [T], shift: [T])?,
    scalingPlanes planeScale: UnsafePointer<Float>? = nil, _ tiling: WinogradTiling, into patches: UnsafeMutablePointer<Float>,
    stream: Int? = nil, _ scratch: UnsafeMutablePointer<Float>
  ) {
    let layout = PlaneLayout(source), channels = source.shape[1]
    let start = source.base(Float.self) + first * layout.imageStride + range.lowerBound * layout.channelStride
    func run(_ scale: UnsafePointer<Float>?, _ shift: UnsafePointer<Float>?) {
      reprise_winograd_input_f32(
        start, layout.channelStride, layout.imageStride, range.count, images, g.height, g.width, scale, shift,
        planeScale.map { $0 + first * channels + range.lowerBound }, channels, tiling.tile, patches, tiling.tileCount,
        stream ?? reprise_winograd_stream(range.count, tiling.tileCount), scratch)
    }
    guard let affine else { return run(nil, nil) }
    affine.scale.withUnsafeBufferPointer { scale in
      affine.shift.withUnsafeBufferPointer { shift in
        run(floats(scale.baseAddress!) + range.lowerBound, floats(shift.baseAddress!) + range.lowerBound)
      }
    }
  }

  /// The weight gradient, and with `w` the input gradient too, of Float32 tensors. The chunks split
  /// into fixed shares, each summing its chunks' weight-gradient products into its own sums (its
  /// first product overwrites them, so nothing zeroes them first); the shares are added in order,
  /// split between the threads, so the result depends on the thread count only and no part of it is
  /// serial. Up to 16 shares per thread, claimed as the threads finish, so that the threads end
  /// within a share of each other (a fixed half each left one waiting whenever the machine slowed
  /// the other), and each thread's shares shrinking towards the end of its block, so that the share
  /// one thread can be left running alone is the smallest
  /// (``Parallel/shrinkingPieces(_:pieces:threads:)``; DenseNet-BC-100 and ResNet-20 waited less,
  /// docs/performance.md#factors). Each share's sums are read once more by the final addition, so
  /// there are fewer where that would cost more than a small part of the products (a share per 128
  /// tiles of the batch at most) or the sums would pass 16 MB (wide layers), but one per thread at
  /// least; a single thread takes one share. Layers too wide for two shares a thread split by
  /// position instead (WinogradConvolution+Positions.swift).
  ///
  /// With `planeScale` ([N][C], one factor per plane of `x`), the convolution is that of x · s:
  /// `x` is scaled as its patches are transformed, and the input gradient, s · conv_transpose(dy,
  /// w), is multiplied by the factors as the output transform writes it into `dx`'s planes.
  private func gradients<T: TensorScalar>(
    _ dy: Tensor, _ x: Tensor, _ w: Tensor?, normalizing affine: (scale: [T], shift: [T])?,
    scalingPlanes planeScale: UnsafePointer<Float>? = nil, inputGradient dx: InputGradientTarget?, weightGradient dw: Tensor
  ) {
    if splitsGradientsByPosition {
      return gradientsByPosition(
        dy, x, w, normalizing: affine, scalingPlanes: planeScale, inputGradient: dx, weightGradient: dw)
    }
    var tiling = gradientTiling
    let (c, o) = (g.inputChannels, g.outputChannels), size = tiling.positions * o * c
    let threads = Parallel.threadCount, tiles = g.batch * tiling.tilesPerImage
    let perThread = max(1, min(16, tiles / 128 / threads, (1 << 22) / size / threads))
    let shares = threads == 1 ? 1 : threads * perThread
    // Each chunk after a share's first reads and writes the share's sums again, and the input
    // gradient reads all of `u` again. Where the sums outweigh a chunk's transformed data (wide
    // layers on small planes and batches: 128 channels on 8x8 planes at batch 16 have 2.4 MB of
    // sums against 0.6 MB of data in a chunk of 4 images) and the threads share the memory's
    // bandwidth, the chunks are as large as the shares allow. (One thread has the bandwidth to
    // itself, and its larger chunks' data, out of its L2 cache, cost more than the passes they
    // saved.) The sums run over a share's tiles in the same order unless the images pair up
    // differently in 8x8 planes' mosaics (chunks of odd sizes).
    let pieces = threads == 1 ? 1 : max(1, min(tiling.chunks(g.batch), shares))
    let bounds = Parallel.shrinkingPieces(g.batch, pieces: pieces)
    if threads > 1 && size > tiling.positions * (o + c) * tiling.imagesPerChunk * tiling.tilesPerImage {
      let largest = zip(bounds.dropFirst(), bounds).map { $0 - $1 }.max()!
      tiling = tiling.withChunks(g, minimumChunks: max(1, g.batch / largest))
    }
    let t = tiling.tileCount
    let sums = Tensor(uninitializedShape: [pieces * size], dtype: .float32), ps = sums.base(Float.self)
    let u = w.map { transformedWeights($0, reversed: true, tiling) }, pu = u?.base(Float.self)
    let pdy = dy.base(Float.self), gl = PlaneLayout(dy), plain: (scale: [T], shift: [T])? = nil
    forEachChunk(tiling, bounds: bounds, rows: (tiling.blockSize(of: c, facing: o), o), panels: true) { p, first, images, b in
      let (v, m, scratch) = (b[0], b[1], b[2])
      if let pu, let dx {  // the output gradient's patches into m, their products into v, then into dx
        convolveChunk(dy, from: o, pu, to: c, normalizing: plain, tiling, first: first, images: images, m, v, scratch) {
          deliverInputGradient($0, rows: $1, into: dx, scalingPlanes: planeScale, tiling, first: first, images: images, scratch)
        }
      }
      reprise_winograd_output_gradient_f32(
        pdy + first * gl.imageStride, gl.channelStride, gl.imageStride, o, images, g.height, g.width, tiling.tile, m, t,
        reprise_winograd_stream(o, t), scratch)
      let accumulate: Int32 = first == bounds[p] ? 0 : 1  // a share's first chunk starts its sums
      for block in tiling.blocks(of: c, facing: o) {  // columns `block` of each dU[ξ]
        transformPatches(
          x, channels: block, first: first, images: images, normalizing: affine, scalingPlanes: planeScale, tiling, into: v, scratch)
        reprise_winograd_transposed_products_f32(
          tiling.positions, m, o, v, block.count, tiling.columns(images), t, ps + p * size + block.lowerBound, c, accumulate, b[3])
      }
    }
    Parallel.addPieces(ps + size, pieces: pieces - 1, count: size, into: ps)
    weightGradient(fromSums: ps, tiling, into: dw)
    withExtendedLifetime((sums, u)) {}
  }

  /// The weight gradient G^T dU G into `dw` from the transformed sums dU[P][outputs][channels],
  /// split by outputs between the threads.
  func weightGradient(fromSums sums: UnsafePointer<Float>, _ tiling: WinogradTiling, into dw: Tensor) {
    let (c, o) = (g.inputChannels, g.outputChannels), pdw = dw.base(Float.self)
    Parallel.forRanges(o, costPerItem: 4 * c * tiling.positions) { range in
      reprise_winograd_weight_gradient_f32(sums, o, c, tiling.tile, range.lowerBound, range.count, pdw)
    }
  }

  /// The input gradient's channels `rows` of one chunk transformed back from their products
  /// (matrices of those rows alone) into `dx`'s planes: written directly, or, with plane factors or
  /// planes of their own, delivered plane by plane.
  func deliverInputGradient(
    _ products: UnsafeMutablePointer<Float>, rows: Range<Int>, into dx: InputGradientTarget,
    scalingPlanes planeScale: UnsafePointer<Float>?, _ tiling: WinogradTiling, first: Int, images: Int,
    _ scratch: UnsafeMutablePointer<Float>
  ) {
    guard planeScale == nil, let direct = dx.tensor else {
      return dx.deliver(products, tiling, images: first..<first + images, channels: rows, scalingPlanes: planeScale, g, scratch)
    }
    transformBack(products, rows: rows, into: direct, tiling, first: first, images: images, scratch)
  }
}
