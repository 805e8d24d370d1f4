import Autograd
import TensorModule

extension Module {
  /// The stored properties in this module's tree that hold a module with parameters or buffers
  /// which no `children` list reaches, as `Type.property` paths: that module's parameters would
  /// silently never train, save or load. Found by reflection over stored properties (and the
  /// arrays, optionals and tuples in them); an empty list means every such module is listed.
  /// Modules without parameters or buffers (activations, pooling) need not be listed.
  public var unlistedSubmodules: [String] {
    var listed = Set<ObjectIdentifier>()
    var stack: [any Module] = [self]
    var tree: [any Module] = []
    while let module = stack.popLast() {
      guard listed.insert(ObjectIdentifier(module)).inserted else { continue }
      tree.append(module)
      stack += module.children.map(\.module)
    }
    var found: [String] = []
    for module in tree {
      var mirror: Mirror? = Mirror(reflecting: module)
      while let m = mirror {
        for child in m.children {
          let path = "\(type(of: module)).\(child.label ?? "?")"
          for held in modules(in: child.value, depth: 0) where !listed.contains(ObjectIdentifier(held)) && hasState(held) {
            found.append(path)
          }
        }
        mirror = m.superclassMirror
      }
    }
    return Array(Set(found)).sorted()
  }
}

/// Whether `module` or a module its `children` reach owns a parameter or buffer.
private func hasState(_ module: any Module) -> Bool {
  var stack: [any Module] = [module]
  while let m = stack.popLast() {
    if !m.ownParameters.isEmpty || !m.ownBuffers.isEmpty { return true }
    stack += m.children.map(\.module)
  }
  return false
}

/// The modules a stored value holds: itself, or the modules in an array, optional, tuple or
/// struct it is (to a small depth; collections of non-modules are not walked).
private func modules(in value: Any, depth: Int) -> [any Module] {
  if let module = value as? any Module { return [module] }
  guard depth < 3 else { return [] }
  let mirror = Mirror(reflecting: value)
  switch mirror.displayStyle {
  case .optional, .tuple, .struct:
    return mirror.children.flatMap { modules(in: $0.value, depth: depth + 1) }
  case .collection:
    guard let first = mirror.children.first?.value, !modules(in: first, depth: depth + 1).isEmpty else { return [] }
    return mirror.children.flatMap { modules(in: $0.value, depth: depth + 1) }
  default:
    return []
  }
}
