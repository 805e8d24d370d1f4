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
  /// A chunk's images take about 256 KiB of grid, at `imageElements` floats each, so that a
  /// chunk's grids stay in its core's own cache; and each thread gets at least four chunks, for
  /// balance.
  static func forEachImageChunk(
    _ g: ConvolutionGeometry, imageElements: Int, weightGradient dw: Tensor? = nil,
    _ body: (_ images: Range<Int>, _ chunk: ConvolutionGeometry, _ weightGradient: Tensor?) -> Void
  ) {
    let threads = 4 * Parallel.threadCount
    let per = max(1, min((g.batch + threads - 1) / threads, (1 << 16) / max(1, imageElements)))
    let chunks = (g.batch + per - 1) / per
    let partial = dw.flatMap { chunks > 1 ? Tensor(uninitializedShape: [chunks - 1, $0.count], dtype: .float32) : nil }
    Parallel.run(chunks) { c in
      let images = c * per..<min(g.batch, (c + 1) * per)
      body(images, g.images(images.count), c == 0 ? dw : partial.map { slice($0, c - 1..<c, alongAxis: 0) })
    }
    guard let dw, let partial else { return }
    Parallel.addPieces(partial.base(Float.self), pieces: chunks - 1, count: dw.count, into: dw.base(Float.self))
  }
}
