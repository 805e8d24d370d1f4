import COpenBLAS

/// How many cores the kernels use, and the one place that splits work across them.
///
/// Reprise runs one set of threads: OpenBLAS is kept single-threaded and matrix products are split
/// into blocks here, like every other loop. Two thread pools on the same cores (OpenBLAS's spinning
/// workers and Reprise's) would take turns busy-waiting; one pool never does.
public enum Parallel {
  nonisolated(unsafe) private static var pool = ThreadPool(workerCount: defaultThreadCount() - 1)

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

  /// Runs `body(0) ... body(count - 1)` on up to `count` threads.
  static func run(_ count: Int, _ body: (Int) -> Void) {
    pool.run(count, body)
  }

  /// Runs `body` over `0..<count` split into contiguous ranges, up to four per thread, when the
  /// work is large enough (`count * costPerItem` above about 32k operations); otherwise on the
  /// caller. Threads claim ranges as they finish, so one that starts late (a worker waking up, a
  /// page fault) takes fewer instead of keeping the others waiting.
  ///
  /// The ranges depend only on `count`, `costPerItem` and the thread count, and each is processed
  /// by one thread, so results that depend only on the range are deterministic for a given thread count.
  static func forRanges(_ count: Int, costPerItem: Int = 1, _ body: (Range<Int>) -> Void) {
    let chunks = min(4 * threadCount, count, max(1, count * costPerItem / 32_768))
    if chunks <= 1 {
      body(0..<count)
      return
    }
    pool.run(chunks) { c in
      body(count * c / chunks..<count * (c + 1) / chunks)
    }
  }
}
