/// The optimisation behind the checkpoint planner: a chain of units, each with a few ways to run
/// (keep its tape, or be a region with some policy), runs of consecutive units that may be one
/// region, and the schedule of least recomputation whose predicted peak fits a byte budget.
///
/// The model of memory, after Beaumont et al., "Optimal checkpointing for heterogeneous chains"
/// (2019), with each unit recomputed at most once: the forward pass adds each unit's kept bytes to a
/// running total P; unit i needs, on top of the total before it, its forward transient while it runs
/// and its backward footprint while its gradients are computed, which is when the units before it
/// still hold what they kept. Recomputation costs each region's replay time. So the peak is max over
/// i of P(i-1) + max(forward, backward) of unit i, and P(n) + the tail (the loss and the start of the
/// backward pass). A region over a span of units keeps only its input and its last unit's output;
/// its replay records the whole span, whose tapes add up while its units' gradients are computed.
public struct CheckpointChain: Sendable, Equatable {
  /// One way to run a unit. By convention option 0 keeps the unit's tape and option 1 makes it a
  /// region that keeps nothing; spans are costed from those two.
  public struct Option: Sendable, Equatable {
    /// Bytes it adds to the live total by the end of its forward pass (its output, and its tape
    /// when it keeps one).
    public var keptBytes: Int
    /// The largest live bytes during its forward pass, above the total before it.
    public var forwardBytes: Int
    /// The largest live bytes during its backward pass, above the total before it.
    public var backwardBytes: Int
    /// Seconds its replay adds to a step (0 when it keeps its tape).
    public var recomputeSeconds: Double

    /// An option from its measurements.
    public init(keptBytes: Int, forwardBytes: Int, backwardBytes: Int, recomputeSeconds: Double) {
      (self.keptBytes, self.forwardBytes, self.backwardBytes, self.recomputeSeconds) =
        (keptBytes, forwardBytes, backwardBytes, recomputeSeconds)
    }
  }

  /// One step of a schedule: a unit run with one of its options, or a region over the next
  /// `length` units.
  public enum Step: Sendable, Equatable {
    /// The unit with its option of this index.
    case unit(Int)
    /// A region over this many consecutive units (at least 2), keeping nothing.
    case span(Int)

    /// How many units it covers.
    public var length: Int {
      switch self {
      case .unit: 1
      case .span(let n): n
      }
    }
  }

  /// Live bytes before the first unit.
  public var baseBytes: Int
  /// The options of each unit, in forward order.
  public var units: [[Option]]
  /// The largest live bytes after the last unit's forward pass and before its backward pass,
  /// above the total then.
  public var tailBytes: Int
  /// The runs of consecutive units (as unit indices) any part of which, of two units or more, may
  /// be one region: the units of one composition that are leaves.
  public var spannable: [ClosedRange<Int>]

  /// A chain from its measurements.
  public init(baseBytes: Int, units: [[Option]], tailBytes: Int, spannable: [ClosedRange<Int>] = []) {
    (self.baseBytes, self.units, self.tailBytes, self.spannable) = (baseBytes, units, tailBytes, spannable)
  }

  /// The bytes kept, the largest live bytes (absolute), and the replay seconds of running units
  /// `first..<first + length` from a total of `total` before them, as `step`.
  func cost(_ step: Step, at first: Int, from total: Int) -> (kept: Int, peak: Int, seconds: Double) {
    switch step {
    case .unit(let c):
      let o = units[first][c]
      return (o.keptBytes, total + max(o.forwardBytes, o.backwardBytes), o.recomputeSeconds)
    case .span(let length):
      let range = first..<first + length
      var peak = total, tape = 0, seconds = 0.0
      for m in range {
        let (kept, region) = (units[m][0], units[m][1])
        // The first pass holds the previous unit's output while this one runs; the replay holds
        // the tapes of the span's units before it, in forward and in backward.
        let previous = m > first ? units[m - 1][1].keptBytes : 0
        peak = max(peak, total + previous + region.forwardBytes, total + tape + max(kept.forwardBytes, region.backwardBytes))
        tape += kept.keptBytes
        seconds += region.recomputeSeconds
      }
      return (units[first + length - 1][1].keptBytes, peak, seconds)
    }
  }

  /// The predicted peak of `schedule`.
  public func peakBytes(_ schedule: [Step]) -> Int {
    var total = baseBytes, peak = baseBytes, first = 0
    for step in schedule {
      let c = cost(step, at: first, from: total)
      (peak, total, first) = (max(peak, c.peak), total + c.kept, first + step.length)
    }
    return max(peak, total + tailBytes)
  }

  /// The recomputation seconds of `schedule`.
  public func recomputeSeconds(_ schedule: [Step]) -> Double {
    var seconds = 0.0, first = 0
    for step in schedule {
      seconds += cost(step, at: first, from: 0).seconds
      first += step.length
    }
    return seconds
  }

  /// The schedule of least recomputation whose predicted peak is at most `budget`, or nil when none
  /// fits.
  ///
  /// Exact dynamic programming over positions in the chain: the states after the first p units are
  /// the (running total, time) pairs of all schedules of them that no other state beats in both; a
  /// state with a smaller total can do everything a larger one can later, so the discarded states
  /// never lead to a better schedule. `Tests/NNTests/CheckpointSolverTests` checks it against every
  /// schedule.
  public func cheapest(within budget: Int) -> [Step]? {
    search { s in s.peak <= budget ? s.seconds : nil }
  }

  /// The schedule of least recomputation among those of the smallest predicted peak: the peak by
  /// the same programme with (running total, peak so far) as the pairs, then ``cheapest(within:)``
  /// that peak (units whose options all fit under it need not be recomputed).
  public func smallestPeak() -> [Step] {
    let smallest = search { s in Double(s.peak) }!
    return cheapest(within: peakBytes(smallest)) ?? smallest
  }

  private struct State {
    var total: Int, peak: Int, seconds: Double, node: Int
  }

  /// The schedule whose final state has the least `objective` (nil: infeasible), keeping at each
  /// position the states no other beats in both total and objective.
  private func search(_ objective: (State) -> Double?) -> [Step]? {
    let n = units.count
    var spansFrom = Array(repeating: [Int](), count: n)  // span lengths that may start at each unit
    for run in spannable where run.count >= 2 {
      for start in run where run.upperBound - start + 1 >= 2 { spansFrom[start] += Array(2...(run.upperBound - start + 1)) }
    }
    for i in 0..<n { spansFrom[i] = Array(Set(spansFrom[i])).sorted() }
    var nodes: [(parent: Int, step: Step)] = []
    var fronts = Array(repeating: [State](), count: n + 1)
    fronts[0] = [State(total: baseBytes, peak: baseBytes, seconds: 0, node: -1)]
    for p in 0...n {
      // The Pareto front at p: by total ascending, each state strictly better than every state
      // with a smaller or equal total.
      var candidates = fronts[p].compactMap { s in objective(s).map { (s, $0) } }
      candidates.sort { ($0.0.total, $0.1) < ($1.0.total, $1.1) }
      var front: [State] = []
      var best = Double.infinity
      for (s, value) in candidates where value < best {
        front.append(s)
        best = value
      }
      fronts[p] = front
      guard p < n else { break }
      for s in front {
        let steps = units[p].indices.map(Step.unit) + spansFrom[p].map(Step.span)
        for step in steps {
          let c = cost(step, at: p, from: s.total)
          nodes.append((s.node, step))
          fronts[p + step.length].append(
            State(total: s.total + c.kept, peak: Swift.max(s.peak, c.peak), seconds: s.seconds + c.seconds, node: nodes.count - 1))
        }
      }
    }
    let finished = fronts[n].map { s -> State in
      var s = s
      s.peak = Swift.max(s.peak, s.total + tailBytes)
      return s
    }
    guard let best = finished.compactMap({ s in objective(s).map { (s, $0) } }).min(by: { $0.1 < $1.1 })?.0 else { return nil }
    var schedule: [Step] = [], node = best.node
    while node >= 0 {
      schedule.append(nodes[node].step)
      node = nodes[node].parent
    }
    return schedule.reversed()
  }
}
