/// The optimisation behind the checkpoint planner: a chain of units, each with a few ways to run
/// (keep its tape, or be a region with some policy), and the schedule of least recomputation whose
/// predicted peak fits a byte budget.
///
/// The model of memory, from Beaumont et al., "Optimal checkpointing for heterogeneous chains"
/// (2019), restricted to one level (a unit is recomputed at most once, from its own input): the
/// forward pass adds each unit's kept bytes to a running total P; unit i needs, on top of the total
/// before it, its forward transient while it runs and its backward footprint while its gradients
/// are computed, which is when the units before it still hold what they kept. Recomputation costs
/// each region's replay time. So the peak is max over i of P(i-1) + max(forward, backward) of unit i,
/// and P(n) + the tail (the loss and the start of the backward pass).
public struct CheckpointChain: Sendable, Equatable {
  /// One way to run a unit.
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

  /// Live bytes before the first unit.
  public var baseBytes: Int
  /// The options of each unit, in forward order.
  public var units: [[Option]]
  /// The largest live bytes after the last unit's forward pass and before its backward pass,
  /// above the total then.
  public var tailBytes: Int

  /// A chain from its measurements.
  public init(baseBytes: Int, units: [[Option]], tailBytes: Int) {
    (self.baseBytes, self.units, self.tailBytes) = (baseBytes, units, tailBytes)
  }

  /// The predicted peak of running unit i with option `choices[i]`.
  public func peakBytes(_ choices: [Int]) -> Int {
    var total = baseBytes, peak = baseBytes
    for (options, c) in zip(units, choices) {
      let o = options[c]
      peak = max(peak, total + max(o.forwardBytes, o.backwardBytes))
      total += o.keptBytes
    }
    return max(peak, total + tailBytes)
  }

  /// The recomputation seconds of `choices`.
  public func recomputeSeconds(_ choices: [Int]) -> Double {
    zip(units, choices).reduce(0) { $0 + $1.0[$1.1].recomputeSeconds }
  }

  /// The choices of least recomputation whose predicted peak is at most `budget`, or nil when none
  /// fits.
  ///
  /// Exact dynamic programming over the units: the states after unit i are the (running total,
  /// time) pairs of all choices so far that no other state beats in both; a state with a smaller
  /// total can do everything a larger one can later, so the discarded states never lead to a
  /// better schedule. `Tests/NNTests/CheckpointSolverTests` checks it against every choice.
  public func cheapest(within budget: Int) -> [Int]? {
    struct State { var total: Int, seconds: Double, peak: Int, node: Int }
    var nodes: [(parent: Int, choice: Int)] = []  // the choices, as a tree shared by the states
    var states = [State(total: baseBytes, seconds: 0, peak: baseBytes, node: -1)]
    for options in units {
      var next: [State] = []
      for s in states {
        for (c, o) in options.enumerated() {
          let peak = max(s.peak, s.total + max(o.forwardBytes, o.backwardBytes))
          guard peak <= budget else { continue }
          nodes.append((s.node, c))
          next.append(State(total: s.total + o.keptBytes, seconds: s.seconds + o.recomputeSeconds, peak: peak, node: nodes.count - 1))
        }
      }
      // The Pareto front of (total, seconds): by total ascending, keep each state strictly faster
      // than every state with a smaller or equal total (equal: the one of smaller peak).
      next.sort { ($0.total, $0.seconds, $0.peak) < ($1.total, $1.seconds, $1.peak) }
      states = []
      for s in next where states.last.map({ s.seconds < $0.seconds }) ?? true { states.append(s) }
      if states.isEmpty { return nil }
    }
    let finished = states.map { s in (s, max(s.peak, s.total + tailBytes)) }.filter { $0.1 <= budget }
    guard let best = finished.min(by: { ($0.0.seconds, $0.1) < ($1.0.seconds, $1.1) })?.0 else { return nil }
    var choices: [Int] = [], node = best.node
    while node >= 0 {
      choices.append(nodes[node].choice)
      node = nodes[node].parent
    }
    return choices.reversed()
  }

  /// The choices of the smallest predicted peak (the other end of the range from keeping every
  /// tape), by the same kind of programme: the states are the (running total, peak so far) pairs
  /// that no other state beats in both.
  public func smallestPeak() -> [Int] {
    struct State { var total: Int, peak: Int, node: Int }
    var nodes: [(parent: Int, choice: Int)] = []
    var states = [State(total: baseBytes, peak: baseBytes, node: -1)]
    for options in units {
      var next: [State] = []
      for s in states {
        for (c, o) in options.enumerated() {
          nodes.append((s.node, c))
          next.append(State(total: s.total + o.keptBytes, peak: max(s.peak, s.total + max(o.forwardBytes, o.backwardBytes)), node: nodes.count - 1))
        }
      }
      next.sort { ($0.total, $0.peak) < ($1.total, $1.peak) }
      states = []
      for s in next where states.last.map({ s.peak < $0.peak }) ?? true { states.append(s) }
    }
    let best = states.min { max($0.peak, $0.total + tailBytes) < max($1.peak, $1.total + tailBytes) }!
    var choices: [Int] = [], node = best.node
    while node >= 0 {
      choices.append(nodes[node].choice)
      node = nodes[node].parent
    }
    return choices.reversed()
  }
}
