import Autograd
import TensorModule

/// A module whose forward pass runs a sequence of units, each through the checkpoint plan in force
/// (``withCheckpointPlan(_:in:_:)``): the structure a plan maps to regions.
///
/// A chain's units may be chains themselves (stages of blocks of layers); the units that are not
/// are the leaves a planner chooses for. A ``Composition`` applies its units one after another; other
/// chains (a dense block, whose layers read a shared buffer) run each unit with
/// `Autograd/checkpointUnit(_:_:_:)`.
public protocol Chain: Module {
  /// The units, named as module-path components, in the order the forward pass runs them.
  var units: [(name: String, module: any Module)] { get }
}

/// A chain whose forward pass is the composition of its units, each a layer. Nested compositions
/// are inlined, so a plan's region may span any consecutive units, also across their boundaries.
public protocol Composition: Chain, Layer {
  /// The layers applied in order.
  var composedLayers: [(name: String, layer: any Layer)] { get }
}

extension Composition {
  /// The composed layers.
  public var units: [(name: String, module: any Module)] { composedLayers.map { ($0.name, $0.layer) } }

  /// The composed layers applied in order, nested compositions inlined, with the plan in force.
  public func callAsFunction(_ input: Variable) -> Variable { runUnits(inlinedSteps, input) }

  /// The layers, with the layers of nested compositions in their place.
  var inlinedSteps: [(unit: AnyObject, apply: (Variable) -> Variable)] {
    composedLayers.flatMap { _, layer -> [(unit: AnyObject, apply: (Variable) -> Variable)] in
      if let nested = layer as? any Composition { return nested.inlinedSteps }
      return [(layer, { layer($0) })]
    }
  }
}

/// One unit of a network's chain structure.
public struct ChainUnit {
  /// The dotted path of module names from the network (`features.denseblock1.denselayer3`).
  public var path: String
  /// The unit.
  public var module: any Module
  /// Its position among its chain's units, and how many there are.
  public var index: Int, siblingCount: Int
  /// Whether it has no units of its own: the granularity a planner chooses at.
  public var isLeaf: Bool { !(module is any Chain) }
}

extension Chain {
  /// Every unit below this chain, depth first in forward order (a chain before its units).
  public var allUnits: [ChainUnit] {
    var result: [ChainUnit] = []
    func walk(_ chain: any Chain, _ prefix: String) {
      let units = chain.units
      for (i, (name, module)) in units.enumerated() {
        let path = prefix + name
        result.append(ChainUnit(path: path, module: module, index: i, siblingCount: units.count))
        if let nested = module as? any Chain { walk(nested, path + ".") }
      }
    }
    walk(self, "")
    return result
  }

  /// The leaf units, in forward order.
  public var leafUnits: [ChainUnit] { allUnits.filter(\.isLeaf) }

  /// This chain if it is a composition, and every composition among its units, each with the path
  /// prefix (ending in a dot, empty for this chain) of its units.
  var compositions: [(prefix: String, composition: any Composition)] {
    var result: [(prefix: String, composition: any Composition)] = []
    if let top = self as? any Composition { result.append(("", top)) }
    for unit in allUnits { if let c = unit.module as? any Composition { result.append((unit.path + ".", c)) } }
    return result
  }
}

extension Chain {
  /// The module path of every unit, by identity: names for `Autograd/savedTensors(naming:_:)`.
  public var unitPaths: [ObjectIdentifier: String] {
    Dictionary(allUnits.map { (ObjectIdentifier($0.module), $0.path) }, uniquingKeysWith: { first, _ in first })
  }
}
