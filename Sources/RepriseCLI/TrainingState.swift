import Foundation
import Reprise

/// What `--checkpoint` writes and `--resume` reads besides the model: the step, the random streams
/// and the optimiser's buffers, so that a resumed run continues exactly.
struct TrainingState {
  var step: Int
  var dataGenerator: RandomGenerator

  /// Writes the model, optimiser state (`optimizer.` entries) and metadata atomically.
  func save(to path: String, model: any Module, optimizer: any Optimizer) throws {
    let g = RandomGenerator.global.state, d = dataGenerator.state
    let metadata = [
      "step": "\(step)",
      "globalGenerator": [g.0, g.1, g.2, g.3].map { "\($0)" }.joined(separator: ","),
      "dataGenerator": [d.0, d.1, d.2, d.3].map { "\($0)" }.joined(separator: ","),
    ]
    let entries = model.stateEntries + optimizer.state.sorted { $0.key < $1.key }.map { ("optimizer.\($0.key)", SafeTensors.Entry($0.value)) }
    try SafeTensors.write(entries, metadata: metadata, to: path)
  }

  /// Restores the model and optimiser from `path` and returns the step and random streams.
  static func restore(from path: String, model: any Module, optimizer: any Optimizer) throws -> TrainingState {
    let (entries, metadata) = try SafeTensors.read(path)
    func generator(_ key: String) throws -> RandomGenerator {
      let parts = (metadata[key] ?? "").split(separator: ",").compactMap { UInt64($0) }
      guard parts.count == 4 else { throw StateFileError.corrupt(path, "metadata '\(key)' is missing or malformed") }
      var g = RandomGenerator(seed: 0)
      g.state = (parts[0], parts[1], parts[2], parts[3])
      return g
    }
    guard let step = metadata["step"].flatMap({ Int($0) }) else { throw StateFileError.corrupt(path, "not a training state: no step in its metadata") }
    try model.load(entries: entries, path: path, ignoringPrefixes: ["optimizer."])
    var optimizerState: [String: Tensor] = [:]
    for (key, entry) in entries where key.hasPrefix("optimizer.") {
      optimizerState[String(key.dropFirst("optimizer.".count))] = try entry.tensor(path: path)
    }
    try optimizer.load(state: optimizerState)
    RandomGenerator.global = try generator("globalGenerator")
    return TrainingState(step: step, dataGenerator: try generator("dataGenerator"))
  }
}
