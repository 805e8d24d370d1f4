import Foundation
import Synchronization

/// The line two threads hand back and forth.
private final class SharedLine: Sendable {
  let value = Atomic<Int>(0)
}

extension Bench {
  /// `--kernel roundtrip`: how long one cache line takes to go from one thread to another and back.
  /// About 60 ns where the two cores share a last-level cache, several times that where they sit on
  /// different dies or sockets; a virtual machine's cores may move between the two during a run.
  /// Streaming kernels slow down on separate dies (docs/performance.md#two-dies), so comparisons
  /// record it next to their timings.
  func benchRoundTrip() throws {
    let line = SharedLine(), rounds = 7, tripsPerRound = 20_000, trips = rounds * tripsPerRound
    // Spins yield after a while, so that the run still ends when both threads share one core.
    @Sendable func wait(until expected: Int) {
      var spins = 0
      while line.value.load(ordering: .acquiring) != expected {
        spins += 1
        if spins % 4096 == 0 { sched_yield() }
      }
    }
    let responder = Thread {
      for i in 0..<trips {
        wait(until: 2 * i + 1)
        line.value.store(2 * i + 2, ordering: .releasing)
      }
    }
    responder.start()
    var nanoseconds: [Double] = []
    for round in 0..<rounds {
      let elapsed = seconds {
        for j in 0..<tripsPerRound {
          let i = round * tripsPerRound + j
          line.value.store(2 * i + 1, ordering: .releasing)
          wait(until: 2 * i + 2)
        }
      }
      nanoseconds.append(elapsed / Double(tripsPerRound) * 1e9)
    }
    let m = median(nanoseconds), fastest = nanoseconds.min()!
    if json {
      struct Output: Encodable { var kernel: String, nanosecondsMedian: Double, nanosecondsMin: Double }
      try printJSON(Output(kernel: "roundtrip", nanosecondsMedian: m, nanosecondsMin: fastest))
    } else {
      print(String(format: "cache-line round trip between two threads: %.0f ns (median of %d rounds, fastest %.0f ns)", m, rounds, fastest))
    }
  }
}
