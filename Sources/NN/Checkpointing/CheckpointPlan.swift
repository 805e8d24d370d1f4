import Autograd
import TensorModule

/// Which parts of a network run as checkpoint regions, and what each keeps: a value applied to a
/// model from outside (``withCheckpointPlan(_:in:_:)``), never code inside it.
///
/// A region spans the units from `first` to `last` (module paths of its chain structure,
/// ``Chain/allUnits``): one unit of any chain, or consecutive units of a ``Composition``. Regions
/// nest when one lies inside another. Every plan gives the gradients and running statistics of
/// no plan, bit for bit (contract rule 8); plans differ in memory and time only.
public struct CheckpointPlan: Sendable, Equatable, CustomStringConvertible {
  /// One region of a plan.
  public struct Region: Sendable, Equatable {
    /// The path of the first unit it spans.
    public var first: String
    /// The path of the last unit it spans (`first` for a region of one unit).
    public var last: String
    /// What it keeps besides its input.
    public var policy: CheckpointPolicy

    /// A region from `first` to `last` (by default `first` alone).
    public init(first: String, last: String? = nil, policy: CheckpointPolicy = .nothing) {
      (self.first, self.last, self.policy) = (first, last ?? first, policy)
    }
  }

  /// The regions, in forward order.
  public var regions: [Region]

  /// A plan of these regions.
  public init(regions: [Region]) { self.regions = regions }

  /// No regions: every unit keeps its tape (the fastest step, the largest peak).
  public static let none = CheckpointPlan(regions: [])

  /// A region of every unit for which `policy` returns a policy.
  public static func units(of network: any Chain, _ policy: (ChainUnit) -> CheckpointPolicy?) -> CheckpointPlan {
    CheckpointPlan(regions: network.allUnits.compactMap { unit in policy(unit).map { Region(first: unit.path, policy: $0) } })
  }

  /// A region of every leaf unit, keeping nothing: the smallest peak without nested recomputation.
  public static func everyUnit(of network: any Chain) -> CheckpointPlan {
    units(of: network) { $0.isLeaf ? .nothing : nil }
  }

  /// The units of `network`'s composition (nested compositions inlined) in `count` segments of
  /// consecutive units, each a region but the last, which is needed first in the backward pass
  /// (PyTorch's `checkpoint_sequential`; about sqrt(units) segments balance the kept boundaries
  /// against one segment's tape, Chen et al. 2016).
  public static func segments(_ count: Int, of network: any Composition) -> CheckpointPlan {
    let steps = network.inlinedPaths
    let n = steps.count, count = min(max(1, count), max(n, 1))
    return CheckpointPlan(
      regions: (0..<count - 1).map { s in Region(first: steps[n * s / count], last: steps[n * (s + 1) / count - 1]) })
  }

  /// One line per region.
  public var description: String {
    guard !regions.isEmpty else { return "no checkpoint regions" }
    return regions.map { r in (r.first == r.last ? r.first : "\(r.first) ... \(r.last)") + " (keeps \(r.policy))" }
      .joined(separator: "\n")
  }

  /// The plan by unit identity, for the forward pass.
  ///
  /// - Throws: ``CheckpointPlanError`` when a path names no unit of `network`, or a region's last
  ///   unit does not follow its first in one composition.
  public func resolved(in network: any Chain) throws -> UnitRegions {
    var byPath: [String: ChainUnit] = [:]
    for unit in network.allUnits { byPath[unit.path] = unit }
    var result = UnitRegions()
    for region in regions {
      guard let first = byPath[region.first] else { throw CheckpointPlanError.unknownUnit(region.first) }
      guard let last = byPath[region.last] else { throw CheckpointPlanError.unknownUnit(region.last) }
      // A region over a whole composition, or from one unit to another, spans their inlined steps.
      let (start, end) = (firstStep(first.module), lastStep(last.module))
      if start !== end {
        guard let steps = enclosingSteps(region.first, region.last, network),
          let i = steps.firstIndex(where: { $0 === start }), let j = steps.firstIndex(where: { $0 === end }), i <= j
        else { throw CheckpointPlanError.notConsecutive(region.first, region.last) }
      }
      let name = region.first == region.last ? region.first : "\(region.first) ... \(region.last)"
      result.regions[ObjectIdentifier(start)] = UnitRegions.Region(last: ObjectIdentifier(end), name: name, policy: region.policy)
    }
    return result
  }

  /// The inlined steps of the innermost composition whose units contain both paths.
  private func enclosingSteps(_ a: String, _ b: String, _ network: any Chain) -> [AnyObject]? {
    let enclosing = network.compositions.filter { a.hasPrefix($0.prefix) && b.hasPrefix($0.prefix) }.max { $0.prefix.count < $1.prefix.count }
    return enclosing?.composition.inlinedSteps.map(\.unit)
  }
}
/// A plan that does not fit the network it is applied to.
public enum CheckpointPlanError: Error, CustomStringConvertible, Equatable {
  /// A path that names no unit of the network's chain structure.
  case unknownUnit(String)
  /// A region whose last unit does not follow its first within one composition.
  case notConsecutive(String, String)

  /// The message.
  public var description: String {
    switch self {
    case .unknownUnit(let path): "checkpoint plan: '\(path)' is not a unit of the network (see `reprise plan --list-units`)"
    case .notConsecutive(let a, let b): "checkpoint plan: '\(b)' does not follow '\(a)' in one composition, so they cannot be one region"
    }
  }
}

/// Runs `body` (forward passes of `network`, and their backward passes) with `plan` in force.
///
/// - Throws: ``CheckpointPlanError`` when the plan does not fit `network`.
public func withCheckpointPlan<R>(_ plan: CheckpointPlan, in network: any Chain, _ body: () throws -> R) throws -> R {
  let regions = try plan.resolved(in: network)
  return try withCheckpointRegions(regions.regions.isEmpty ? nil : regions, body)
}

/// The first step a unit's forward pass runs when inlined in a composition.
private func firstStep(_ module: any Module) -> AnyObject {
  guard let c = module as? any Composition, let first = c.inlinedSteps.first else { return module }
  return first.unit
}

/// The last step a unit's forward pass runs when inlined in a composition.
private func lastStep(_ module: any Module) -> AnyObject {
  guard let c = module as? any Composition, let last = c.inlinedSteps.last else { return module }
  return last.unit
}

extension Composition {
  /// The paths of ``inlinedSteps``, relative to this composition.
  var inlinedPaths: [String] {
    composedLayers.flatMap { name, layer -> [String] in
      if let nested = layer as? any Composition { return nested.inlinedPaths.map { name + "." + $0 } }
      return [name]
    }
  }
}
