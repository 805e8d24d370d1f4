#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Seconds on a monotonic clock, for timing steps and parts of them (the pool's measurements too).
public func monotonicSeconds() -> Double {
  var t = timespec()
  clock_gettime(CLOCK_MONOTONIC, &t)
  return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// What the pool's threads did while ``Parallel/measuringWork(_:)`` ran its body.
///
/// Every thread is either working or idle. The calling thread works all the time but for its waits
/// at the ends of jobs for the indices other threads are still running: between jobs it runs the
/// program's own code (the tape, the allocator, kernels too small to split) while the workers wait
/// for the next job. A worker works while it runs a job's index. So on one thread the work is the
/// whole time, and a speedup over one thread is the thread count, times the share of the threads'
/// time they worked, divided by how much longer the same work took in all.
public struct PoolWork: Sendable, Equatable {
  /// The seconds the measurement took.
  public var seconds: Double
  /// The seconds each thread worked; thread 0 is the calling thread.
  public var busySeconds: [Double]
  /// The seconds the calling thread waited at the ends of jobs for other threads.
  public var waitingSeconds: Double
  /// The indices of jobs split across the threads that each thread ran.
  public var indices: [Int]
  /// The indices each thread took from another thread's share of a job, having finished its own.
  public var takenIndices: [Int]

  /// No work on `threads` threads.
  public init(threads: Int) {
    (seconds, waitingSeconds) = (0, 0)
    busySeconds = Array(repeating: 0, count: threads)
    indices = Array(repeating: 0, count: threads)
    takenIndices = Array(repeating: 0, count: threads)
  }

  /// The seconds all threads together worked.
  public var totalBusySeconds: Double { busySeconds.reduce(0, +) }

  /// The share of the threads' time (their number times ``seconds``) they worked; 0 for no time.
  public var busyFraction: Double {
    seconds > 0 && !busySeconds.isEmpty ? totalBusySeconds / (Double(busySeconds.count) * seconds) : 0
  }

  /// The share of ``seconds`` the calling thread waited at the ends of jobs; 0 for no time.
  public var waitingFraction: Double { seconds > 0 ? waitingSeconds / seconds : 0 }

  /// The share of the indices run that a thread took from another's share (0 without any).
  public var takenFraction: Double {
    let total = indices.reduce(0, +)
    return total == 0 ? 0 : Double(takenIndices.reduce(0, +)) / Double(total)
  }

  /// Adds `other`'s work, thread by thread; the result has as many threads as the larger of the two.
  public static func += (work: inout PoolWork, other: PoolWork) {
    let threads = max(work.busySeconds.count, other.busySeconds.count)
    func padded<T: Numeric>(_ values: [T]) -> [T] { values + Array(repeating: 0, count: threads - values.count) }
    work.seconds += other.seconds
    work.waitingSeconds += other.waitingSeconds
    work.busySeconds = zip(padded(work.busySeconds), padded(other.busySeconds)).map(+)
    work.indices = zip(padded(work.indices), padded(other.indices)).map(+)
    work.takenIndices = zip(padded(work.takenIndices), padded(other.takenIndices)).map(+)
  }
}

extension Parallel {
  /// Runs `body` while the pool's threads count what they do, and returns `body`'s result with
  /// their work (``PoolWork``).
  ///
  /// Jobs that other threads start while `body` runs count as the workers' work and do not count
  /// for the calling thread. Measuring adds two clock reads to each index a worker runs and to
  /// each job's end, tens of nanoseconds against the microseconds an index takes.
  ///
  /// - Precondition: no other measurement is running, and `body` does not change the thread count.
  public static func measuringWork<R>(_ body: () throws -> R) rethrows -> (result: R, work: PoolWork) {
    let measured = pool
    require(!measured.measuring.load(ordering: .relaxed), "measuringWork: a measurement is already running")
    measured.resetCounts()
    measured.measuring.store(true, ordering: .sequentiallyConsistent)
    defer { measured.measuring.store(false, ordering: .sequentiallyConsistent) }
    let start = monotonicSeconds()
    let result = try body()
    let seconds = monotonicSeconds() - start
    require(measured === pool, "measuringWork: the thread count changed while measuring")
    let counts = measured.counts()
    var work = PoolWork(threads: counts.count)
    work.seconds = seconds
    work.waitingSeconds = Double(counts[0].waiting) / 1e9
    work.busySeconds = [seconds - work.waitingSeconds] + counts.dropFirst().map { Double($0.running) / 1e9 }
    work.indices = counts.map(\.indices)
    work.takenIndices = counts.map(\.taken)
    return (result, work)
  }
}
