import TensorModule

/// Which units of a network run as checkpoint regions, by identity: the form of a checkpoint plan
/// that the forward pass consults (NN's `CheckpointPlan` resolves module paths to it).
///
/// A region starts at a unit and spans consecutive units of the same composition up to `last`
/// (itself for a region of one unit).
public struct UnitRegions {
  /// A region: the unit it ends with, its name for messages, and what it keeps.
  public struct Region {
    /// The last unit the region spans (the first one for a region of one unit).
    public var last: ObjectIdentifier
    /// The region's name in messages (a module path).
    public var name: String
    /// What the region keeps besides its input (rule 10).
    public var policy: CheckpointPolicy

    /// A region ending at `last`.
    public init(last: ObjectIdentifier, name: String, policy: CheckpointPolicy) {
      (self.last, self.name, self.policy) = (last, name, policy)
    }
  }

  /// The regions by their first unit.
  public var regions: [ObjectIdentifier: Region]

  /// Regions by their first unit.
  public init(_ regions: [ObjectIdentifier: Region] = [:]) { self.regions = regions }
}

/// Runs `body` with `regions` in force: units that `checkpointUnit(_:_:_:)` and
/// ``runUnits(_:_:)`` run become the checkpoint regions it names. `nil` runs every unit plainly.
public func withCheckpointRegions<R>(_ regions: UnitRegions?, _ body: () throws -> R) rethrows -> R {
  try Context.current.with(\.plan, regions, body)
}

/// Runs `body` as `unit`, one unit of a chain whose data flow is the caller's own (the layers of a
/// dense block, the filters of a sequentially aggregated convolution): as a checkpoint region when
/// the plan in force makes one of `unit`, plainly otherwise.
public func checkpointUnit(_ unit: AnyObject, _ inputs: [Variable], _ body: @escaping ([Variable]) -> [Variable]) -> [Variable] {
  let context = Context.current, id = ObjectIdentifier(unit)
  let region = context.plan?.regions[id].flatMap { $0.last == id ? $0 : nil }
  let probe = context.profiler?.probe(id)
  probe?.willRun()
  defer { probe?.didRun() }
  let run = {
    guard let region else { return body(inputs) }
    return checkpoint(inputs, policy: region.policy, name: region.name, observer: probe, body)
  }
  // The saved-tensor report names what runs here by the unit's path.
  guard let collector = context.savedTensors else { return run() }
  return collector.within(collector.names[id], run)
}

/// Runs `body` as `unit` with one input and one output (see `checkpointUnit(_:_:_:)-([Variable])`).
public func checkpointUnit(_ unit: AnyObject, _ input: Variable, _ body: @escaping (Variable) -> Variable) -> Variable {
  checkpointUnit(unit, [input]) { [body($0[0])] }[0]
}

/// Applies `steps`, the units of a composition in order, with the plan in force: a region that
/// starts at one of them covers it up to its last unit; the others run as
/// `checkpointUnit(_:_:_:)` does.
public func runUnits(_ steps: [(unit: AnyObject, apply: (Variable) -> Variable)], _ input: Variable) -> Variable {
  let context = Context.current
  var x = input, i = 0
  while i < steps.count {
    let id = ObjectIdentifier(steps[i].unit)
    if let region = context.plan?.regions[id], region.last != id,
      let end = steps[i...].firstIndex(where: { ObjectIdentifier($0.unit) == region.last })
    {
      let span = steps[i...end], input = x
      let run = { checkpoint(input, policy: region.policy, name: region.name) { v in span.reduce(v) { y, step in step.apply(y) } } }
      // The saved-tensor report names a span's results by the span.
      x = context.savedTensors?.within(region.name, run) ?? run()
      i = end + 1
    } else {
      x = checkpointUnit(steps[i].unit, x, steps[i].apply)
      i += 1
    }
  }
  return x
}
