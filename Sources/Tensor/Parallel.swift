import COpenBLAS

/// How many cores the kernels use, and the one place that splits work across them.
///
/// Reprise runs one set of threads: OpenBLAS is kept single-threaded and matrix products are split
/// into blocks here, like every other loop. Two thread pools on the same cores (OpenBLAS's spinning
/// workers and Reprise's) would take turns busy-waiting; one pool never does.
public enum Parallel {
  nonisolated(unsafe) private(set) static var pool = ThreadPool(workerCount: defaultThreadCount() - 1)

  /// The number of threads kernels and OpenBLAS use.
  public static var threadCount: Int { pool.workerCount + 1 }

  /// Sets the number of threads for every kernel, matrix products included.
  ///
  /// - Precondition: `count` is at least 1.
  public static func setThreadCount(_ count: Int) {
    require(count >= 1, "setThreadCount: thread count must be at least 1, got \(count)")
    guard count != threadCount else { return }
    pool.shutdown()
    pool = ThreadPool(workerCount: count - 1)
  }

  private static func defaultThreadCount() -> Int {
    let cores = Int(openblas_get_num_threads())
    openblas_set_num_threads(1)
    return max(1, cores)
  }

  /// Runs `body(0) ... body(count - 1)` on up to `count` threads. Thread `t` of `T` takes the
  /// indices from `count * t / T` up to `count * (t + 1) / T` first, in order, then helps with the
  /// others' (`ThreadPool`).
  static func run(_ count: Int, _ body: (Int) -> Void) {
    pool.run(count) { i, _ in body(i) }
  }

  /// Runs `body(index, thread)` for every index in `0..<count`, as ``run(_:_:)`` does, telling
  /// each call which thread (`0..<threadCount`, the caller being 0) runs it, for scratch space
  /// of one's own.
  static func run(_ count: Int, byThread body: (_ index: Int, _ thread: Int) -> Void) {
    pool.run(count, body)
  }

  /// The bounds of `pieces` contiguous pieces of `0..<total` for ``run(_:byThread:)``, shrinking
  /// within each thread's block: the `k` pieces thread `t` of `T` takes first (the pool's block of
  /// indices) cover `total * t / T` to `total * (t + 1) / T` and have sizes in proportion to `k, k -
  /// 1, ..., 1`, each at least 1 where the share allows. Another thread claims a block's pieces from
  /// the end it has not reached, so what one thread can be left running after the other runs out is
  /// the last and smallest piece, not an equal share's piece: guided scheduling with the pieces
  /// fixed in advance, for kernels whose results depend on how the work is cut. The bounds depend on
  /// `total`, `pieces` and `threads` only.
  ///
  /// - Returns: `pieces + 1` bounds from 0 to `total`, increasing where `pieces` is at most `total`.
  static func shrinkingPieces(_ total: Int, pieces: Int, threads: Int = threadCount) -> [Int] {
    var bounds = [0]
    for t in 0..<threads {
      let (p0, p1) = (pieces * t / threads, pieces * (t + 1) / threads), k = p1 - p0
      let (start, end) = (bounds.last!, total * (t + 1) / threads)
      let n = end - start, weights = k * (k + 1) / 2
      var taken = 0  // weights of the pieces placed so far
      for j in 0..<k {
        taken += k - j
        // Rounded to the nearest, then kept at least one past the last bound and one short of
        // the end for each piece still to come, where the share has room for that.
        var bound = start + (2 * n * taken + weights) / (2 * weights)
        bound = min(max(bound, min(bounds.last! + 1, end)), max(end - (k - 1 - j), bounds.last!))
        bounds.append(bound)
      }
    }
    return bounds
  }

  /// Runs `body` over `0..<count` split into contiguous ranges, up to four per thread, when the
  /// work is large enough (`count * costPerItem` above about 32k operations); otherwise on the
  /// caller. Each thread takes its own share of the ranges first (the first threads the first
  /// ranges), then claims what is left of the others' as it finishes, so one that starts late (a
  /// worker waking up, a page fault) takes fewer instead of keeping the others waiting.
  ///
  /// The ranges depend only on `count`, `costPerItem` and the thread count, and each is processed
  /// by one thread, so results that depend only on the range are deterministic for a given thread count.
  static func forRanges(_ count: Int, costPerItem: Int = 1, _ body: (Range<Int>) -> Void) {
    let chunks = min(4 * threadCount, count, max(1, count * costPerItem / 32_768))
    if chunks <= 1 {
      body(0..<count)
      return
    }
    pool.run(chunks) { c, _ in
      body(count * c / chunks..<count * (c + 1) / chunks)
    }
  }

  /// Adds the `pieces` runs of `count` scalars laid one after another at `parts` into `sums`, each
  /// element in piece order, split across threads by elements: the partial sums of work done in
  /// pieces, added so that the result depends on the number of pieces only.
  static func addPieces<T: TensorScalar>(_ parts: UnsafePointer<T>, pieces: Int, count: Int, into sums: UnsafeMutablePointer<T>) {
    guard pieces > 0 else { return }
    forRanges(count, costPerItem: pieces) { range in
      for p in 0..<pieces {
        let part = parts + p * count
        for i in range { sums[i] += part[i] }
      }
    }
  }
}
