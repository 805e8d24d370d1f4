import Foundation
import Reprise

extension Bench {
  /// The elements of each tensor `--kernel stream` adds when `--size` is not given: 64 MiB of
  /// Float32, well past the last-level cache of the processors Reprise runs on, so that every pass
  /// streams from memory.
  static let defaultStreamElements = 1 << 24

  /// `--kernel stream`: the rate at which `a += b` streams two Float32 tensors of `--size`
  /// elements through memory, split across the threads by the pool every kernel uses; 12 bytes an
  /// element are counted (two read, one written), as STREAM counts its add.
  ///
  /// The batch normalisation's passes, the Winograd transforms and the residual sums move their
  /// tensors through memory as this does. Where two threads stream hardly faster than one, the
  /// memory, not the cores, bounds those passes, and a step spends more of its time in them with
  /// each thread it adds; with `--compare-threads` the two counts take turns, as the steps of a
  /// model do, so that the speedup compares them under the same load from the machine's other
  /// tenants (docs/performance.md#stream).
  func benchStream() throws {
    let count = size ?? Bench.defaultStreamElements
    var random = RandomGenerator(seed: 1)
    var a = Tensor(randomNormal: [count], using: &random)
    let b = Tensor(randomNormal: [count], using: &random)
    // The sums grow by b each pass and stay finite: b is unit normal, and --steps allows a million passes.
    let (times, compared, _, _) = timedInTurns(passes: steps) { a += b }
    let bytes = Double(12 * count), m = median(times)
    let comparison = threadComparison(compared, against: m)
    if json {
      struct Output: Encodable {
        var kernel: String, elements: Int, threads: Int, secondsMedian: Double, passSeconds: [Double], bytesPerSecond: Double
        /// With --compare-threads: its thread count, its passes' median and every pass, its rate,
        /// and the speedup of --threads over it (the ratio of the medians).
        var compareThreads: Int?, compareSecondsMedian: Double?, comparePassSeconds: [Double]?, compareBytesPerSecond: Double?
        var speedup: Double?
      }
      try printJSON(Output(
        kernel: "stream", elements: count, threads: Parallel.threadCount, secondsMedian: m, passSeconds: times,
        bytesPerSecond: bytes / m, compareThreads: comparison?.threads, compareSecondsMedian: comparison?.median,
        comparePassSeconds: comparison?.runs, compareBytesPerSecond: comparison.map { bytes / $0.median },
        speedup: comparison?.speedup))
    } else {
      print(String(format: "stream: a += b over Float32 tensors of %d elements (%.1f MiB each), %@, median of %d passes:",
        count, Double(4 * count) / 1_048_576, Bench.threadsLabel(Parallel.threadCount), times.count))
      print(String(format: "  %.5f s a pass, %.1f GB/s (12 bytes an element)", m, bytes / m / 1e9))
      if let comparison {
        print(String(
          format: "  on %@, in turn: %.5f s, %.1f GB/s; %@ are %.2fx as fast", Bench.threadsLabel(comparison.threads), comparison.median,
          bytes / comparison.median / 1e9, Bench.threadsLabel(Parallel.threadCount), comparison.speedup))
      }
    }
  }

  /// Runs `body` `passes` timed times on `--threads` threads and, with `--compare-threads`,
  /// `passes` timed times on that many too, and returns the two lists of seconds in order. The
  /// counts take turns of up to ``stepsPerTurn`` timed runs, each turn after an untimed run at its
  /// count: the first run after a switch pays for waking the cores the turn before left idle, and
  /// would charge the count with more threads for it (docs/performance.md#threads-in-turn).
  /// Without `--compare-threads`, one untimed run and then all the timed ones. `body` is told
  /// whether the run is timed and at the compared count. With the seconds come what the pool's
  /// threads did in the timed runs on each count (``Parallel/measuringWork(_:)``).
  func timedInTurns(passes: Int, _ body: (_ timed: Bool, _ comparing: Bool) -> Void)
    -> (times: [Double], compared: [Double], work: PoolWork, comparedWork: PoolWork)
  {
    let threads = Parallel.threadCount, perTurn = compareThreads == nil ? passes : Bench.stepsPerTurn
    var times: [Double] = [], compared: [Double] = [], turn = 0
    var work = PoolWork(threads: threads), comparedWork = PoolWork(threads: compareThreads ?? 0)
    while times.count < passes || (compareThreads != nil && compared.count < passes) {
      let comparing = compareThreads != nil && turn % 2 == 1
      if let compareThreads { Parallel.setThreadCount(comparing ? compareThreads : threads) }
      for s in 0...min(perTurn, passes - (comparing ? compared.count : times.count)) {
        let (t, runWork) = Parallel.measuringWork { seconds { body(s > 0, comparing) } }
        if s == 0 { continue }
        if comparing {
          compared.append(t)
          comparedWork += runWork
        } else {
          times.append(t)
          work += runWork
        }
      }
      turn += 1
    }
    Parallel.setThreadCount(threads)
    return (times, compared, work, comparedWork)
  }

  /// With `--compare-threads`, the runs on its count against those on `--threads`.
  struct ThreadComparison {
    /// The compared thread count, the median of its runs, and every run in order.
    let threads: Int, median: Double, runs: [Double]
    /// How many times as fast `--threads` ran: the ratio of the two medians.
    let speedup: Double
  }

  /// The comparison of `compared`, the runs `timedInTurns` timed on `--compare-threads`, with
  /// `reference`, the median of those on `--threads`; nil without `--compare-threads`.
  func threadComparison(_ compared: [Double], against reference: Double) -> ThreadComparison? {
    compareThreads.map { threads in
      let m = median(compared)
      return ThreadComparison(threads: threads, median: m, runs: compared, speedup: m / reference)
    }
  }

  /// What the pool's threads did over the timed steps on one thread count.
  struct PoolSummary {
    /// The threads' work over all the timed steps.
    let work: PoolWork
    /// The timed steps.
    let steps: Int

    /// The seconds each thread worked in a step, on average.
    var busySecondsPerStep: [Double] { work.busySeconds.map { $0 / Double(max(1, steps)) } }

    /// The seconds all threads worked in a step.
    var totalBusySecondsPerStep: Double { work.totalBusySeconds / Double(max(1, steps)) }

    /// How much longer the same steps' work took here than in `other`, another thread count's: the
    /// ratio of the seconds all threads worked in a step; nil where `other` did none.
    ///
    /// A speedup is the ratio of the thread counts, times that of their busy fractions, divided by
    /// this ratio, which a host whose cores slow each other down (shared caches and memory, a
    /// core's sibling busy with another tenant) raises above 1.
    func busyTimeRatio(to other: PoolSummary) -> Double? {
      other.totalBusySecondsPerStep > 0 ? totalBusySecondsPerStep / other.totalBusySecondsPerStep : nil
    }
  }

  /// ``timedInTurns(passes:_:)`` for a body that needs not know which run it is.
  func timedInTurns(passes: Int, _ body: () -> Void) -> (times: [Double], compared: [Double], work: PoolWork, comparedWork: PoolWork) {
    timedInTurns(passes: passes) { _, _ in body() }
  }
}
