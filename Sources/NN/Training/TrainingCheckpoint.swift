import Autograd
import Foundation
import TensorModule

/// A training run's state at a step boundary: with the model and optimiser it restores, enough to
/// continue the run exactly as if it had not stopped (the step, both random streams, and the
/// configuration that decides the result).
///
/// The file is safetensors: the model's entries, the optimiser's as `optimizer.<key>`, and the
/// step, random states and configuration in the metadata. Restoring refuses a run whose
/// configuration differs from the saved one and names each difference, since continuing with
/// another batch size or learning rate would silently give another result.
public struct TrainingCheckpoint {
  /// Steps taken so far.
  public var step: Int
  /// The random stream of data order and augmentation.
  public var dataGenerator: RandomGenerator
  /// What decides the run's result (batch size, learning rate, seed...), as names and values.
  public var configuration: [String: String]

  /// A checkpoint of `step` with the given data stream and configuration.
  public init(step: Int, dataGenerator: RandomGenerator, configuration: [String: String]) {
    (self.step, self.dataGenerator, self.configuration) = (step, dataGenerator, configuration)
  }

  static let configurationPrefix = "configuration."

  /// Writes the model, the optimiser state, the step, `RandomGenerator.global`, the data stream
  /// and the configuration to `path`, atomically.
  ///
  /// - Parameters:
  ///   - path: the file.
  ///   - model: the model whose state is written.
  ///   - optimizer: the optimiser whose state is written.
  ///   - metadata: more metadata to write (such as the model's architecture record).
  /// - Throws: ``StateFileError/unwritable(_:_:)``.
  public func save(to path: String, model: any Module, optimizer: any Optimizer, metadata: [String: String] = [:]) throws {
    func text(_ g: RandomGenerator) -> String { [g.state.0, g.state.1, g.state.2, g.state.3].map { "\($0)" }.joined(separator: ",") }
    var all = metadata.merging(["step": "\(step)", "globalGenerator": text(RandomGenerator.global), "dataGenerator": text(dataGenerator)]) { $1 }
    for (key, value) in configuration { all[Self.configurationPrefix + key] = value }
    let entries = model.stateEntries + optimizer.state.sorted { $0.key < $1.key }.map { ("optimizer.\($0.key)", SafeTensors.Entry($0.value)) }
    try SafeTensors.write(entries, metadata: all, to: path)
  }

  /// Restores `model`, `optimizer` and `RandomGenerator.global` from the file at `path` and returns
  /// the checkpoint, after checking that it was written by a run of `configuration`.
  ///
  /// - Throws: ``StateFileError`` when the file is unreadable, is not a training checkpoint, does
  ///   not fit the model or optimiser, or was written by a run of another configuration. Nothing is
  ///   changed then.
  public static func restore(
    from path: String, model: any Module, optimizer: any Optimizer, configuration: [String: String]
  ) throws -> TrainingCheckpoint {
    let (entries, metadata) = try SafeTensors.read(path)
    return try restore(entries: entries, metadata: metadata, model: model, optimizer: optimizer, configuration: configuration, path: path)
  }

  /// ``restore(from:model:optimizer:configuration:)`` from a file's entries and metadata.
  public static func restore(
    entries: [String: SafeTensors.Entry], metadata: [String: String], model: any Module, optimizer: any Optimizer,
    configuration: [String: String], path: String = "checkpoint"
  ) throws -> TrainingCheckpoint {
    func corrupt(_ why: String) -> StateFileError { .corrupt(path, why) }
    func generator(_ key: String) throws -> RandomGenerator {
      let parts = (metadata[key] ?? "").split(separator: ",", omittingEmptySubsequences: false).map { UInt64($0) }
      guard parts.count == 4, case let words = parts.compactMap({ $0 }), words.count == 4, words.contains(where: { $0 != 0 }) else {
        throw corrupt("metadata '\(key)' is not four 64-bit words, not all zero")
      }
      var g = RandomGenerator(seed: 0)
      g.state = (words[0], words[1], words[2], words[3])
      return g
    }
    guard let text = metadata["step"] else { throw corrupt("not a training checkpoint: no step in its metadata") }
    guard let step = Int(text), (0...(1 << 53)).contains(step) else { throw corrupt("step '\(text)' is not a whole number in 0...2^53") }
    let (global, data) = (try generator("globalGenerator"), try generator("dataGenerator"))
    let saved = Dictionary(uniqueKeysWithValues: metadata.compactMap { key, value in
      key.hasPrefix(configurationPrefix) ? (String(key.dropFirst(configurationPrefix.count)), value) : nil
    })
    let differences = Set(saved.keys).union(configuration.keys).sorted().compactMap { key -> String? in
      let (was, now) = (saved[key], configuration[key])
      return was == now ? nil : "\(key) \(now ?? "(not set)") (the checkpoint's: \(was ?? "(not set)"))"
    }
    guard differences.isEmpty else {
      throw corrupt("it was written by a run of another configuration: \(differences.joined(separator: ", "))")
    }
    var optimizerState: [String: Tensor] = [:]
    for (key, entry) in entries where key.hasPrefix("optimizer.") {
      optimizerState[String(key.dropFirst("optimizer.".count))] = try entry.finiteFloatTensor(named: key, path: path)
    }
    let previous = optimizer.state
    try optimizer.load(state: optimizerState)
    do {
      try model.load(entries: entries, path: path, ignoringPrefixes: ["optimizer."])
    } catch {
      try? optimizer.load(state: previous)
      throw error
    }
    RandomGenerator.global = global
    return TrainingCheckpoint(step: step, dataGenerator: data, configuration: configuration)
  }
}
