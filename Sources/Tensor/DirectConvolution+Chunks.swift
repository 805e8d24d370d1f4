/// The direct kernels in chunks of images.
///
/// A grid of the whole batch (the padded input, the phases, the output gradient on the grid's
/// pitch) is several megabytes: it is written by one pass and read by the kernel after it, from
/// the last-level cache at best, and the pass that writes it and the kernel that reads it split
/// the work differently. Where the two cores do not share a last-level cache (two dies), half its
/// lines then cross between the dies. Run in chunks of images instead, each thread takes whole
/// chunks, the first thread the first images (`Parallel.run(_:_:)`): it writes a chunk's grids and
/// runs the kernels on them while they are in its own cache. The kernels inside a chunk run on that
/// thread alone (a job started from inside a job does).
extension DirectConvolution {
  /// Runs `body(images, chunk, weightGradient)` for each chunk of `g`'s batch: `chunk` is the
  /// convolution over those images, and `weightGradient` the chunk's own weight-gradient buffer
  /// (`dw` itself for the first chunk, nil without `dw`). The other chunks' weight gradients are
  /// then added into `dw` in chunk order, so the result depends on the thread count only.
  ///
  /// A chunk's images take at most about 256 KiB of grid, at `imageElements` floats each, so that
  /// a chunk's grids stay in its core's own cache; each thread gets at least four chunks, for
  /// balance, and the threads as many each: the chunks are a multiple of the thread count, their
  /// sizes at most one image apart (9 chunks on two threads kept one thread busy for 5 while the
  /// other waited after 4).
  static func forEachImageChunk(
    _ g: ConvolutionGeometry, imageElements: Int, weightGradient dw: Tensor? = nil,
    _ body: (_ images: Range<Int>, _ chunk: ConvolutionGeometry, _ weightGradient: Tensor?) -> Void
  ) {
    let chunks = imageChunks(batch: g.batch, imageElements: imageElements, threads: Parallel.threadCount)
    let partial = dw.flatMap { chunks > 1 ? Tensor(uninitializedShape: [chunks - 1, $0.count], dtype: .float32) : nil }
    Parallel.run(chunks) { c in
      let images = g.batch * c / chunks..<g.batch * (c + 1) / chunks
      body(images, g.images(images.count), c == 0 ? dw : partial.map { slice($0, c - 1..<c, alongAxis: 0) })
    }
    guard let dw, let partial else { return }
    Parallel.addPieces(partial.base(Float.self), pieces: chunks - 1, count: dw.count, into: dw.base(Float.self))
  }

  /// How many chunks ``forEachImageChunk(_:imageElements:weightGradient:_:)`` cuts a batch into:
  /// enough for chunks of at most about 256 KiB of grid and four per thread, rounded up to a
  /// multiple of `threads` (never more than the images).
  static func imageChunks(batch: Int, imageElements: Int, threads: Int) -> Int {
    let per = max(1, min((batch + 4 * threads - 1) / (4 * threads), (1 << 16) / max(1, imageElements)))
    let chunks = (batch + per - 1) / per
    return min(batch, (chunks + threads - 1) / threads * threads)
  }
}
