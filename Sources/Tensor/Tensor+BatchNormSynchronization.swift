#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Sums per-channel values over the processes of a data-parallel run, for batch normalisation
/// whose statistics cover the whole global batch (synchronized batch normalisation).
///
/// Every process calls it at the same points of a step, in the same order and with the same
/// number of values, as collective communication requires: the processes run the same model on
/// parts of one batch.
public protocol BatchStatisticsSynchronizer: AnyObject {
  /// Replaces each element of `values` by its sum over all processes.
  func sumAcrossProcesses(_ values: inout [Double])
}

/// The synchronizer in force on this thread, with the global element counts it has seen.
final class BatchNormSynchronization {
  let synchronizer: BatchStatisticsSynchronizer
  /// The global number of values per channel for each local number seen in this scope. The
  /// processes' parts of a batch keep their proportions through the network, so a local count
  /// stands for one global count.
  /// Used only by the thread whose synchronizer this is.
  private var globalCounts: [Int: Int] = [:]

  init(_ synchronizer: BatchStatisticsSynchronizer) { self.synchronizer = synchronizer }

  /// Sums `values` (whose last element is the local count per channel) across processes and
  /// notes the global count.
  func sum(_ values: inout [Double], localCount: Int) {
    synchronizer.sumAcrossProcesses(&values)
    globalCounts[localCount] = Int(values.last!)
  }

  /// The global count for `local`, summed across processes if no statistics gave it yet.
  func globalCount(_ local: Int) -> Int {
    if let known = globalCounts[local] { return known }
    var values = [Double(local)]
    sum(&values, localCount: local)
    return Int(values[0])
  }

  private static let key: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { Unmanaged<BatchNormSynchronization>.fromOpaque($0!).release() }
    return key
  }()

  static var current: BatchNormSynchronization? {
    get { pthread_getspecific(key).map { Unmanaged<BatchNormSynchronization>.fromOpaque($0).takeUnretainedValue() } }
    set {
      if let old = pthread_getspecific(key) { Unmanaged<BatchNormSynchronization>.fromOpaque(old).release() }
      pthread_setspecific(key, newValue.map { Unmanaged.passRetained($0).toOpaque() })
    }
  }
}

/// Runs `body` with batch-normalisation statistics synchronized by `synchronizer` on this thread:
/// ``batchNormStatistics(_:)`` returns the mean and biased variance of the global batch (each
/// process's sums added), and the batch-normalisation backward kernels reduce the per-channel sums
/// of the output gradient (Σ dy and Σ dy·x̂) the same way, so the input gradients are those of
/// normalisation over the global batch. The weight and bias gradients stay each process's own
/// share, for the data-parallel gradient reduction to add up. `nil` runs `body` unsynchronized.
public func withSynchronizedBatchStatistics<R>(_ synchronizer: BatchStatisticsSynchronizer?, _ body: () throws -> R) rethrows -> R {
  let outer = BatchNormSynchronization.current
  BatchNormSynchronization.current = synchronizer.map(BatchNormSynchronization.init)
  defer { BatchNormSynchronization.current = outer }
  return try body()
}

/// The number of values per channel that the batch statistics of `input` [N, C, H, W] cover:
/// N * H * W, or under ``withSynchronizedBatchStatistics(_:_:)`` the sum of that over the
/// processes. Running variances are corrected from biased to unbiased with it.
public func batchNormCount(_ input: Tensor) -> Int {
  let local = input.count / max(1, input.shape.count > 1 ? input.shape[1] : 1)
  return BatchNormSynchronization.current?.globalCount(local) ?? local
}
