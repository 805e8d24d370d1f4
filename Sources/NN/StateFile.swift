import Autograd
import Foundation
import TensorModule

/// What can go wrong reading or writing a state or data file.
public enum StateFileError: Error, CustomStringConvertible, Equatable {
  /// The file does not exist or cannot be read.
  case unreadable(String)
  /// The file cannot be written.
  case unwritable(String, String)
  /// The file is not what it claims to be.
  case corrupt(String, String)
  /// The file lacks these keys.
  case missingKeys([String])
  /// The file has keys the model does not.
  case unexpectedKeys([String])
  /// Entries whose shapes differ from the model's.
  case shapeMismatch([(String, expected: [Int], found: [Int])])
  /// Several of the key problems at once, reported together.
  case mismatch(missing: [String], unexpected: [String], misshaped: [(String, expected: [Int], found: [Int])])

  /// One line that says what is wrong.
  public var description: String {
    func shapes(_ list: [(String, expected: [Int], found: [Int])]) -> String {
      list.map { "\($0.0) (expected \($0.expected), found \($0.found))" }.joined(separator: ", ")
    }
    switch self {
    case .unreadable(let path): return "cannot read \(path)"
    case .unwritable(let path, let why): return "cannot write \(path): \(why)"
    case .corrupt(let path, let why): return "\(path) is not a valid file: \(why)"
    case .missingKeys(let keys): return "missing keys: \(keys.joined(separator: ", "))"
    case .unexpectedKeys(let keys): return "unexpected keys: \(keys.joined(separator: ", "))"
    case .shapeMismatch(let list): return "mis-shaped keys: \(shapes(list))"
    case .mismatch(let missing, let unexpected, let misshaped):
      return [
        missing.isEmpty ? nil : "missing keys: \(missing.joined(separator: ", "))",
        unexpected.isEmpty ? nil : "unexpected keys: \(unexpected.joined(separator: ", "))",
        misshaped.isEmpty ? nil : "mis-shaped keys: \(shapes(misshaped))",
      ].compactMap { $0 }.joined(separator: "; ")
    }
  }

  /// Equal when the descriptions are equal.
  public static func == (a: StateFileError, b: StateFileError) -> Bool { a.description == b.description }
}

extension Module {
  /// Every module in the tree with its dotted path ("" for this one), depth first.
  public var namedModules: [(name: String, module: any Module)] {
    var result: [(name: String, module: any Module)] = []
    var stack: [(String, any Module)] = [("", self)]
    while let (name, module) = stack.popLast() {
      result.append((name, module))
      stack += module.children.reversed().map { (name.isEmpty ? $0.name : name + "." + $0.name, $0.module) }
    }
    return result
  }

  /// The parameters, buffers and batch-norm counters (`num_batches_tracked`, as PyTorch) by name.
  public var stateEntries: [(String, SafeTensors.Entry)] {
    (namedParameters + namedBuffers).map { ($0.name, SafeTensors.Entry($0.variable.value)) }
      + namedModules.compactMap { name, module in
        (module as? BatchNorm2d).map { ((name.isEmpty ? "" : name + ".") + "num_batches_tracked", SafeTensors.Entry(integers: [Int64($0.batchesTracked)], shape: [])) }
      }
  }

  /// Saves the state to a safetensors file, atomically.
  ///
  /// - Throws: ``StateFileError`` when it cannot be written.
  public func saveState(to path: String, metadata: [String: String] = [:]) throws {
    try SafeTensors.write(stateEntries, metadata: metadata, to: path)
  }

  /// Loads parameters and buffers from entries such as a safetensors file holds. PyTorch's extra
  /// `num_batches_tracked` entries are accepted (and restore the counters); every other missing,
  /// unexpected or mis-shaped key is reported in one error, and nothing is changed then.
  ///
  /// - Parameters:
  ///   - entries: the file's entries by name.
  ///   - path: the file's name, for error messages.
  ///   - ignoringPrefixes: entries under these prefixes (such as `optimizer.`) are skipped.
  /// - Throws: ``StateFileError``.
  public func load(entries: [String: SafeTensors.Entry], path: String = "", ignoringPrefixes: [String] = []) throws {
    let own = namedParameters + namedBuffers
    let ownNames = Set(own.map(\.name))
    let counters = Dictionary(uniqueKeysWithValues: namedModules.compactMap { name, module in
      (module as? BatchNorm2d).map { ((name.isEmpty ? "" : name + ".") + "num_batches_tracked", $0) }
    })
    let missing = own.map(\.name).filter { entries[$0] == nil }
    let unexpected = entries.keys.filter { key in
      !ownNames.contains(key) && counters[key] == nil && !ignoringPrefixes.contains { key.hasPrefix($0) }
    }.sorted()
    let misshaped = own.compactMap { name, v -> (String, expected: [Int], found: [Int])? in
      guard let e = entries[name], e.shape != v.shape else { return nil }
      return (name, v.shape, e.shape)
    }
    guard missing.isEmpty && unexpected.isEmpty && misshaped.isEmpty else {
      throw StateFileError.mismatch(missing: missing, unexpected: unexpected, misshaped: misshaped)
    }
    let values = try own.map { name, v in try entries[name]!.finiteFloatTensor(named: name, path: path).converted(to: v.dtype) }
    let counts = try counters.map { key, bn -> (BatchNorm2d, Int?) in
      guard let entry = entries[key] else { return (bn, nil) }
      let values = try entry.integers(path: path)
      guard values.count == 1, let count = values.first, (0...Self.maximumBatchesTracked).contains(count) else {
        throw StateFileError.corrupt(path, "'\(key)' must be one count in 0...\(Self.maximumBatchesTracked), found \(values.prefix(4))")
      }
      return (bn, count)
    }
    for ((_, v), value) in zip(own, values) { v.value = value }
    for (bn, count) in counts { if let count { bn.setBatchesTracked(count) } }
  }

  /// The largest `num_batches_tracked` a file may hold: far more steps than any run takes, and far
  /// from the counter's overflow.
  public static var maximumBatchesTracked: Int { 1 << 53 }

  /// Loads the state saved by ``saveState(to:metadata:)`` or by PyTorch (`safetensors.torch.save_file`).
  ///
  /// - Throws: ``StateFileError``.
  public func loadState(from path: String) throws {
    try load(entries: SafeTensors.read(path).entries, path: path, ignoringPrefixes: ["optimizer."])
  }
}
