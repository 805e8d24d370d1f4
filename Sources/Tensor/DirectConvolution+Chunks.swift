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
  /// (`dw` itself when the batch is one chunk, nil without `dw`). The chunks' weight gradients are
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
    let partial = dw.map { chunks == 1 ? $0 : Tensor(uninitializedShape: [chunks, $0.count], dtype: .float32) }
    Parallel.run(chunks) { c in
      let images = c * per..<min(g.batch, (c + 1) * per)
      body(images, g.images(images.count), chunks == 1 ? partial : partial.map { slice($0, c..<c + 1, alongAxis: 0) })
    }
    guard chunks > 1, let dw, let partial else { return }
    let count = dw.count, sums = partial.base(Float.self), out = dw.base(Float.self)
    Parallel.forRanges(count, costPerItem: chunks) { range in
      for i in range {
        var total: Float = 0
        for c in 0..<chunks { total += sums[c * count + i] }
        out[i] = total
      }
    }
  }
}
