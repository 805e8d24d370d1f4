import COpenBLAS
import Dispatch

/// How many cores the kernels use, and the one place that splits a loop across them.
///
/// Reprise's own loops and OpenBLAS take turns (a kernel either calls BLAS or runs its own loop),
/// so both use the same thread count without oversubscribing the cores.
public enum Parallel {
  nonisolated(unsafe) private static var threads = defaultThreadCount()

  /// The number of threads kernels and OpenBLAS use.
  public static var threadCount: Int { threads }

  /// Sets the number of threads for Reprise's loops and for OpenBLAS.
  ///
  /// - Precondition: `count` is at least 1.
  public static func setThreadCount(_ count: Int) {
    require(count >= 1, "setThreadCount: thread count must be at least 1, got \(count)")
    threads = count
    openblas_set_num_threads(Int32(count))
  }

  private static func defaultThreadCount() -> Int {
    Int(openblas_get_num_threads())
  }

  /// Runs `body` over `0..<count` split into contiguous ranges, one per thread, when the work is
  /// large enough (`count * costPerItem` above about 32k operations); otherwise on the caller.
  ///
  /// Each range is processed by one thread, so results that depend only on the range are
  /// deterministic for a given thread count.
  static func forRanges(_ count: Int, costPerItem: Int = 1, _ body: (Range<Int>) -> Void) {
    let chunks = min(threads, count, max(1, count * costPerItem / 32_768))
    if chunks <= 1 {
      body(0..<count)
      return
    }
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
      body(count * c / chunks..<count * (c + 1) / chunks)
    }
  }
}
