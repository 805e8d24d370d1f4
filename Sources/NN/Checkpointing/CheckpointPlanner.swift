import Autograd
import TensorModule

/// Finds the fastest checkpoint plan whose peak tensor memory fits a budget, for any network with
/// a chain structure, by measuring it.
///
/// It profiles training steps of the network four ways: every leaf unit keeping its tape, every
/// leaf unit a region that keeps nothing, every leaf unit that tags values
/// (`Autograd/checkpointName(_:_:)`) a region that keeps them, and every leaf unit a region that keeps
/// its convolutions' and matrix products' outputs (`Autograd/CheckpointPolicy/dotsSaveable`: its
/// replay runs only the cheap operations between them). Per unit that gives each option's
/// kept bytes, forward and backward footprints and replay time (``CheckpointChain``); the solver
/// picks per unit, and the plan is then run and its peak measured. When the measured peak exceeds
/// the budget (the model of memory is a model), it plans again for a budget smaller by the excess.
/// The budget is for everything live at a step's peak: the step's own tensors, what was live before it
/// (the parameters, and whatever else the caller holds) and ``reservedBytes``, so that the peak a
/// training run reports (`Allocator.peakBytes`) is the one planned for.
/// Profiling leaves the network as it was: running statistics, the random generator and gradients
/// are restored.
public struct CheckpointPlanner {
  /// The network planned for.
  public let network: any Chain
  /// One forward and backward pass of a training batch (no update): what is measured.
  public let step: () -> Void
  /// Bytes live during real training steps but not during `step`, counted against the budget:
  /// an optimiser's state, say (``Optimizer/stateBytes``).
  public var reservedBytes: Int
  /// Steps whose median time `plan(within:)` reports.
  public var timedSteps = 3
  /// The part of the budget a measured plan leaves unused: live bytes depend slightly on which
  /// cached buffers serve which requests, so a training step measured elsewhere (with an
  /// optimiser's updates between steps) can peak a little above the planner's own measurement.
  public var margin = 0.005

  /// A planner for `network` that measures `step`.
  public init(network: any Chain, reservedBytes: Int = 0, step: @escaping () -> Void) {
    (self.network, self.reservedBytes, self.step) = (network, reservedBytes, step)
  }

  /// What profiling measured.
  public struct Profile {
    /// The chain of leaf units and their options, in bytes above the live bytes before a step.
    public var chain: CheckpointChain
    /// The leaf units' paths, in forward order.
    public var paths: [String]
    /// Per unit, the policy of each option (nil: no region, the unit keeps its tape).
    public var policies: [[CheckpointPolicy?]]
    /// Measured peaks, held and reserved bytes included: with no plan, and with every leaf unit a
    /// region that keeps nothing (the smallest peak the planner reaches).
    public var plainPeakBytes: Int, minimumPeakBytes: Int
    /// The bytes live before each profiled step (the parameters, and whatever else the caller held):
    /// a training step holds them too, so they count against a budget with the reserved bytes.
    public var heldBytes: Int
    /// The plan that reached ``minimumPeakBytes``, and the peak the solver predicted for its schedule.
    public var minimumPlan: CheckpointPlan, minimumPredictedPeakBytes: Int
  }

  /// A plan and what it was predicted and measured to cost.
  public struct Result {
    /// The plan.
    public var plan: CheckpointPlan
    /// The budget asked for.
    public var budgetBytes: Int
    /// The peak the solver predicted and the peak measured running the plan (held and reserved bytes
    /// included).
    public var predictedPeakBytes: Int, peakBytes: Int
    /// The median seconds of a step (forward and backward) with the plan.
    public var stepSecondsMedian: Double
    /// The two ends of the range of budgets (see ``Profile``).
    public var minimumPeakBytes: Int, plainPeakBytes: Int
  }

  /// Profiles the network.
  public func profile() -> Profile {
    let held = Allocator.liveBytes, fixed = held + reservedBytes
    let leaves = network.leafUnits
    let ids = leaves.map { ObjectIdentifier($0.module) }
    func everyUnit(_ policy: (ObjectIdentifier) -> CheckpointPolicy?) -> UnitRegions {
      var regions = UnitRegions()
      for (id, leaf) in zip(ids, leaves) {
        if let p = policy(id) { regions.regions[id] = UnitRegions.Region(last: id, name: leaf.path, policy: p) }
      }
      return regions
    }
    let kept = measure(nil, ids)
    let recomputed = measure(everyUnit { _ in .nothing }, ids)
    // Regions that keep some of their values, each measured with every unit under it: the values
    // a unit tags (when it tags any), and the outputs of its convolutions and matrix products.
    let ran = { (id: ObjectIdentifier) in recomputed.units[id] ?? .init() }
    let keeping = [
      everyUnit { ran($0).names.isEmpty ? nil : .saving(names: ran($0).names) },
      everyUnit { ran($0).keepableOperations.isDisjoint(with: CheckpointPolicy.dotsSaveable.savedOperations) ? nil : .dotsSaveable },
    ].filter { !$0.regions.isEmpty }.map { (regions: UnitRegions) in (regions, measure(regions, ids)) }
    var units: [[CheckpointChain.Option]] = [], policies: [[CheckpointPolicy?]] = []
    var previous = (kept: kept.first, recomputed: recomputed.first, keeping: keeping.map(\.1.first))
    for id in ids {
      let k = kept.units[id] ?? .init(), r = recomputed.units[id] ?? .init()
      let backward = (r.backwardPeak ?? r.forwardPeak) - previous.recomputed
      var options = [
        CheckpointChain.Option(
          keptBytes: k.liveAfter - previous.kept, forwardBytes: k.forwardPeak - previous.kept, backwardBytes: backward, recomputeSeconds: 0),
        CheckpointChain.Option(
          keptBytes: r.liveAfter - previous.recomputed, forwardBytes: r.forwardPeak - previous.recomputed, backwardBytes: backward,
          recomputeSeconds: r.replaySeconds ?? 0),
      ]
      var unitPolicies: [CheckpointPolicy?] = [nil, .nothing]
      for (i, (regions, measured)) in keeping.enumerated() {
        guard let s = measured.units[id] else { continue }
        if let policy = regions.regions[id]?.policy {
          options.append(
            CheckpointChain.Option(
              keptBytes: s.liveAfter - previous.keeping[i], forwardBytes: s.forwardPeak - previous.keeping[i],
              backwardBytes: max(backward, (s.backwardPeak ?? s.forwardPeak) - previous.keeping[i]), recomputeSeconds: s.replaySeconds ?? 0))
          unitPolicies.append(policy)
        }
        previous.keeping[i] = s.liveAfter
      }
      units.append(options)
      policies.append(unitPolicies)
      (previous.kept, previous.recomputed) = (k.liveAfter, r.liveAfter)
    }
    let tail = recomputed.units[ids.last!].map { max(0, $0.gapPeak - $0.liveAfter) } ?? 0
    let paths = leaves.map(\.path)
    let chain = CheckpointChain(baseBytes: kept.first, units: units, tailBytes: tail, spannable: spannableRuns(paths))
    // The smallest peak is measured with the plan predicted to reach it (not necessarily every unit
    // a region: a region's bookkeeping can cost more than a tiny unit's tape).
    let schedule = chain.smallestPeak(), smallest = plan(paths, policies, schedule)
    let minimum = min(measure(try! smallest.resolved(in: network), []).peak, kept.peak)
    return Profile(
      chain: chain, paths: paths, policies: policies, plainPeakBytes: kept.peak + fixed, minimumPeakBytes: minimum + fixed,
      heldBytes: held, minimumPlan: minimum < kept.peak ? smallest : .none, minimumPredictedPeakBytes: chain.peakBytes(schedule) + fixed)
  }

  /// The plan of a schedule.
  private func plan(_ paths: [String], _ policies: [[CheckpointPolicy?]], _ schedule: [CheckpointChain.Step]) -> CheckpointPlan {
    var regions: [CheckpointPlan.Region] = [], first = 0
    for step in schedule {
      switch step {
      case .unit(let c):
        if let policy = policies[first][c] { regions.append(CheckpointPlan.Region(first: paths[first], policy: policy)) }
      case .span(let length):
        regions.append(CheckpointPlan.Region(first: paths[first], last: paths[first + length - 1]))
      }
      first += step.length
    }
    return CheckpointPlan(regions: regions)
  }

  /// The runs of leaf units, as indices into `paths`, that are consecutive steps of one
  /// composition (nested compositions inlined): the spans a region may cover.
  private func spannableRuns(_ paths: [String]) -> [ClosedRange<Int>] {
    let index = Dictionary(paths.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
    var runs: Set<ClosedRange<Int>> = []
    for (prefix, composition) in network.compositions {
      var run: [Int] = []
      for path in composition.inlinedPaths.map({ prefix + $0 }) + ["\u{0}"] {
        if let i = index[path], run.last.map({ $0 + 1 == i }) ?? true {
          run.append(i)
          continue
        }
        if run.count >= 2 { runs.insert(run.first!...run.last!) }
        run = index[path].map { [$0] } ?? []
      }
    }
    return runs.sorted { ($0.lowerBound, $0.upperBound) < ($1.lowerBound, $1.upperBound) }
  }

  /// The fastest plan whose measured peak, reserved bytes included, is at most `budget` bytes less
  /// the ``margin``.
  ///
  /// - Throws: ``CheckpointPlanningError/budgetTooSmall(budget:minimum:)`` when even the smallest
  ///   peak does not fit.
  public func plan(within budget: Int, profile: Profile? = nil) throws -> Result {
    let profile = profile ?? self.profile()
    guard budget >= profile.minimumPeakBytes else {
      throw CheckpointPlanningError.budgetTooSmall(budget: budget, minimum: profile.minimumPeakBytes)
    }
    let none = Array(repeating: CheckpointChain.Step.unit(0), count: profile.chain.units.count)
    let fixed = profile.heldBytes + reservedBytes
    var best = (plan: CheckpointPlan.none, predicted: profile.chain.peakBytes(none) + fixed, measured: profile.plainPeakBytes)
    if budget < profile.plainPeakBytes {
      best = (profile.minimumPlan, profile.minimumPredictedPeakBytes, profile.minimumPeakBytes)
      let limit = budget - Int(margin * Double(budget))
      var target = limit - fixed
      for _ in 0..<6 {
        guard let choices = profile.chain.cheapest(within: target) else { break }
        let plan = plan(profile.paths, profile.policies, choices)
        let measured = measure(try! plan.resolved(in: network), []).peak + fixed  // the network's own paths
        if measured <= limit {
          best = (plan, profile.chain.peakBytes(choices) + fixed, measured)
          break
        }
        // Over by the model's error: ask for that much less, and a little more each time.
        target -= measured - limit + budget / 200
      }
    }
    let chosen = best
    let regions = try chosen.plan.resolved(in: network)
    let times = (0..<max(1, timedSteps)).map { _ in measure(regions, []).seconds }.sorted()
    return Result(
      plan: chosen.plan, budgetBytes: budget, predictedPeakBytes: chosen.predicted, peakBytes: chosen.measured,
      stepSecondsMedian: times[times.count / 2], minimumPeakBytes: profile.minimumPeakBytes, plainPeakBytes: profile.plainPeakBytes)
  }

  /// One profiled step under `regions`, from the network's state before it, which is then restored.
  private func measure(_ regions: UnitRegions?, _ units: [ObjectIdentifier]) -> (
    units: [ObjectIdentifier: UnitProfiler.Measurement], first: Int, peak: Int, seconds: Double
  ) {
    let buffers = network.namedBuffers.map { ($0.variable, $0.variable.value) }
    let norms = allModules(network).compactMap { $0 as? BatchNorm2d }.map { ($0, $0.batchesTracked) }
    let generator = RandomGenerator.global
    defer {
      for (v, value) in buffers { v.value = value }
      for (norm, count) in norms { norm.setBatchesTracked(count) }
      RandomGenerator.global = generator
      for p in network.parameters { p.grad = nil }
    }
    for p in network.parameters { p.grad = nil }
    let profiler = UnitProfiler(units: Set(units))
    let base = Allocator.liveBytes
    Allocator.resetPeak()
    let start = monotonicSeconds()
    profilingUnits(profiler) { withCheckpointRegions(regions) { step() } }
    let seconds = monotonicSeconds() - start
    let peak = Allocator.peakBytes - base
    let relative = profiler.measurements.mapValues { m -> UnitProfiler.Measurement in
      var m = m
      m.liveBefore -= base
      m.liveAfter -= base
      m.forwardPeak -= base
      m.gapPeak = max(0, m.gapPeak - base)
      m.backwardPeak = m.backwardPeak.map { $0 - base }
      m.backwardLiveBefore = m.backwardLiveBefore.map { $0 - base }
      return m
    }
    let first = profiler.order.first.flatMap { relative[$0]?.liveBefore } ?? 0
    return (relative, first, peak, seconds)
  }
}

/// A budget the planner cannot meet.
public enum CheckpointPlanningError: Error, CustomStringConvertible, Equatable {
  /// The budget is below the smallest peak any plan reaches.
  case budgetTooSmall(budget: Int, minimum: Int)

  /// The message.
  public var description: String {
    switch self {
    case .budgetTooSmall(let budget, let minimum):
      "memory budget \(formatBytes(budget)) is below the smallest peak a checkpoint plan reaches for this model and batch, "
        + "\(formatBytes(minimum)) (\(minimum) bytes)"
    }
  }
}

/// `bytes` in KiB, MiB or GiB, for messages.
public func formatBytes(_ bytes: Int) -> String {
  let mib = Double(bytes) / 1_048_576
  let (value, unit) = mib >= 1024 ? (mib / 1024, "GiB") : mib >= 1 ? (mib, "MiB") : (mib * 1024, "KiB")
  return "\((value * 10).rounded() / 10) \(unit)"
}

/// Every module of `root` and below, depth first.
func allModules(_ root: any Module) -> [any Module] {
  var result: [any Module] = [], stack: [any Module] = [root]
  while let m = stack.popLast() {
    result.append(m)
    stack += m.children.reversed().map(\.module)
  }
  return result
}
