/// What the pool's threads did while ``Parallel/measuringWork(_:)`` ran its body.
///
/// A job's indices are the pieces its kernel splits its work into (ranges of elements, chunks of
/// images, blocks of columns). Time outside them is the calling thread's own code between jobs
/// (the tape, the allocator, kernels too small to split) and the threads' waits at the ends of
/// jobs. A thread that finishes its own share of a job takes indices from the others' shares.
public struct PoolWork: Sendable, Equatable {
  /// The seconds each thread spent running jobs' indices; thread 0 is the calling thread.
  public var busySeconds: [Double]
  /// The indices each thread ran.
  public var indices: [Int]
  /// The indices each thread took from another thread's share.
  public var takenIndices: [Int]

  /// No work on `threads` threads.
  public init(threads: Int) {
    busySeconds = Array(repeating: 0, count: threads)
    indices = Array(repeating: 0, count: threads)
    takenIndices = Array(repeating: 0, count: threads)
  }

  /// The seconds all threads together spent running indices.
  public var totalBusySeconds: Double { busySeconds.reduce(0, +) }

  /// The share of all indices run that a thread took from another's share (0 without any).
  public var takenFraction: Double {
    let total = indices.reduce(0, +)
    return total == 0 ? 0 : Double(takenIndices.reduce(0, +)) / Double(total)
  }

  /// Adds `other`'s work, thread by thread; the result has as many threads as the larger of the two.
  public static func += (work: inout PoolWork, other: PoolWork) {
    let threads = max(work.busySeconds.count, other.busySeconds.count)
    func padded<T: Numeric>(_ values: [T]) -> [T] { values + Array(repeating: 0, count: threads - values.count) }
    work.busySeconds = zip(padded(work.busySeconds), padded(other.busySeconds)).map(+)
    work.indices = zip(padded(work.indices), padded(other.indices)).map(+)
    work.takenIndices = zip(padded(work.takenIndices), padded(other.takenIndices)).map(+)
  }
}

extension Parallel {
  /// Runs `body` while every thread of the pool times the indices it runs, and returns `body`'s
  /// result with what the threads did.
  ///
  /// Jobs that run on the calling thread alone while the pool is free (too small to split, or on
  /// one thread) count as thread 0's; a job started from inside a job counts as part of its
  /// index. Work that another thread starts while a job runs is not counted. Timing adds two clock
  /// reads to each index, tens of nanoseconds against the microseconds an index takes.
  ///
  /// - Precondition: no other measurement is running, and `body` does not change the thread count.
  public static func measuringWork<R>(_ body: () throws -> R) rethrows -> (result: R, work: PoolWork) {
    let measured = pool
    require(!measured.measuring.load(ordering: .relaxed), "measuringWork: a measurement is already running")
    measured.resetCounts()
    measured.measuring.store(true, ordering: .sequentiallyConsistent)
    defer { measured.measuring.store(false, ordering: .sequentiallyConsistent) }
    let result = try body()
    require(measured === pool, "measuringWork: the thread count changed while measuring")
    let counts = measured.counts()
    var work = PoolWork(threads: counts.count)
    work.busySeconds = counts.map { Double($0.nanoseconds) / 1e9 }
    work.indices = counts.map(\.indices)
    work.takenIndices = counts.map(\.taken)
    return (result, work)
  }
}
