import Reprise
import TestSupport
import XCTest

/// The planner's dynamic programme against every choice on random chains.
final class CheckpointSolverTests: XCTestCase {
  /// A random chain of `count` units with two or three options each (keep the tape, a region, a
  /// region that keeps part), in small integers so that times compare exactly.
  func randomChain(_ count: Int, using random: inout RandomGenerator) -> CheckpointChain {
    func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(random.next() % UInt64(range.count)) }
    let units = (0..<count).map { _ -> [CheckpointChain.Option] in
      let output = int(1...8), tape = int(0...30), forward = int(0...20), backward = int(0...40), time = Double(int(1...9))
      var options = [
        CheckpointChain.Option(keptBytes: output + tape, forwardBytes: forward + tape, backwardBytes: backward, recomputeSeconds: 0),
        CheckpointChain.Option(keptBytes: output, forwardBytes: forward, backwardBytes: backward, recomputeSeconds: time),
      ]
      if random.next() % 2 == 0 {
        let part = int(0...tape)
        options.append(
          .init(keptBytes: output + part, forwardBytes: forward + part, backwardBytes: backward, recomputeSeconds: Double(int(0...Int(time)))))
      }
      return options
    }
    // One run of spannable units somewhere in the chain, sometimes none.
    let start = int(0...Swift.max(0, count - 2)), end = int(start...(count - 1))
    let spannable = end > start && random.next() % 4 != 0 ? [start...end] : []
    return CheckpointChain(baseBytes: int(0...10), units: units, tailBytes: int(0...20), spannable: spannable)
  }

  /// The predicted peak and recomputation time of every schedule: every option of every unit, and
  /// every region over two or more units of a spannable run.
  func everySchedule(_ chain: CheckpointChain) -> [(peak: Int, seconds: Double)] {
    var result: [(peak: Int, seconds: Double)] = []
    var schedule: [CheckpointChain.Step] = []
    func visit(_ i: Int) {
      guard i < chain.units.count else { return result.append((chain.peakBytes(schedule), chain.recomputeSeconds(schedule))) }
      for c in chain.units[i].indices {
        schedule.append(.unit(c))
        visit(i + 1)
        schedule.removeLast()
      }
      for run in chain.spannable where run.contains(i) && run.upperBound > i {
        for length in 2...(run.upperBound - i + 1) {
          schedule.append(.span(length))
          visit(i + length)
          schedule.removeLast()
        }
      }
    }
    visit(0)
    return result
  }

  func testDynamicProgrammeIsOptimalOnRandomChains() {
    for seed in 0..<60 as Range<UInt64> {
      var random = RandomGenerator(seed: seed)
      let chain = randomChain(1 + Int(seed % 12), using: &random)
      let all = everySchedule(chain)
      let smallest = all.map(\.peak).min()!, largest = chain.peakBytes(Array(repeating: .unit(0), count: chain.units.count))
      XCTAssertEqual(chain.peakBytes(chain.smallestPeak()), smallest, "seed \(seed): the smallest peak")
      XCTAssertEqual(
        chain.recomputeSeconds(chain.smallestPeak()), all.filter { $0.peak == smallest }.map(\.seconds).min(),
        "seed \(seed): the least recomputation at the smallest peak")
      let range = UInt64(max(1, largest - smallest + 1))
      var budgets: [Int] = [smallest - 1, smallest, (smallest + largest) / 2, largest, largest + 5]
      for _ in 0..<4 { budgets.append(smallest + Int(random.next() % range)) }
      for budget in budgets {
        let exact = all.filter { $0.peak <= budget }.map(\.seconds).min()
        let choices = chain.cheapest(within: budget)
        XCTAssertEqual(choices == nil, exact == nil, "seed \(seed), budget \(budget): feasibility")
        guard let choices, let exact else { continue }
        XCTAssertEqual(choices.reduce(0) { $0 + $1.length }, chain.units.count, "seed \(seed)")
        XCTAssertLessThanOrEqual(chain.peakBytes(choices), budget, "seed \(seed), budget \(budget): the choice does not fit")
        XCTAssertEqual(chain.recomputeSeconds(choices), exact, "seed \(seed), budget \(budget): not the cheapest")
      }
    }
  }

  /// The model of memory on a chain worked by hand: two units, the second's backward footprint
  /// counted on top of what the first kept.
  func testPeakOfAHandWorkedChain() {
    let chain = CheckpointChain(
      baseBytes: 10,
      units: [
        [.init(keptBytes: 50, forwardBytes: 60, backwardBytes: 70, recomputeSeconds: 0), .init(keptBytes: 5, forwardBytes: 60, backwardBytes: 70, recomputeSeconds: 2)],
        [.init(keptBytes: 40, forwardBytes: 45, backwardBytes: 30, recomputeSeconds: 0), .init(keptBytes: 4, forwardBytes: 45, backwardBytes: 30, recomputeSeconds: 1)],
      ],
      tailBytes: 3)
    XCTAssertEqual(chain.peakBytes([.unit(0), .unit(0)]), max(10 + 70, 60 + 45, 100 + 3))
    XCTAssertEqual(chain.peakBytes([.unit(1), .unit(1)]), max(10 + 70, 15 + 45, 19 + 3))
    XCTAssertEqual(chain.cheapest(within: 105), [.unit(0), .unit(0)])
    XCTAssertEqual(chain.cheapest(within: 104), [.unit(1), .unit(0)], "the second unit's forward footprint sits on what the first kept")
    XCTAssertEqual(chain.peakBytes([.unit(1), .unit(0)]), 80)
    XCTAssertEqual(chain.smallestPeak(), [.unit(1), .unit(0)], "the peak of both regions (80), recomputing less")
    // As one region: it keeps the last output only (4); its replay holds the first unit's tape (50)
    // while the second's gradients are computed (30), and its first pass the first output (5)
    // while the second runs (45).
    var spanning = chain
    spanning.spannable = [0...1]
    XCTAssertEqual(spanning.peakBytes([.span(2)]), max(10 + 70, 10 + 5 + 45, 10 + 50 + max(45, 30), 10 + 4 + 3))
    XCTAssertEqual(spanning.recomputeSeconds([.span(2)]), 3)
    XCTAssertEqual(chain.cheapest(within: 79), nil)
  }
}
