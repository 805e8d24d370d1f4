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
