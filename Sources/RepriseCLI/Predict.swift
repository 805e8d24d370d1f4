import ArgumentParser
import Foundation
import Reprise

/// `reprise predict`: logits of saved weights for the images in a safetensors file; of several
/// models, their ensemble's probabilities.
struct Predict: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Logits for a safetensors tensor `input` [N, C, H, W] (float32), written as `logits` [N, classes]; given several weights, the ensemble's mean softmax as `probabilities` and its logarithm as `logits`.")

  @OptionGroup var modelOptions: ModelOptions
  @Option(parsing: .upToNextOption, help: "The model state (safetensors, PyTorch keys), or several to average as an ensemble.")
  var weights: [String]
  @Option(help: "A safetensors file with a float32 tensor `input` [N, C, H, W].") var input: String
  @Option(help: "Where to write the safetensors file with `logits` [N, classes].") var output: String
  @OptionGroup var threadOptions: ThreadOptions

  func validate() throws {
    guard !weights.isEmpty else { throw ValidationError("--weights needs at least one file") }
    for path in weights { try readable("--weights", path) }
    try readable("--input", input)
    try writable("--output", output)
  }

  func run() throws {
    threadOptions.apply()
    let entries = try SafeTensors.read(input).entries
    guard let entry = entries["input"], entry.dtype == "F32", entry.shape.count == 4 else {
      throw StateFileError.corrupt(input, "expected a float32 tensor 'input' of rank 4 [N, C, H, W], found \(entries.keys.sorted())")
    }
    let images = try entry.finiteFloatTensor(named: "input", path: input)
    let models = try weights.map { try modelOptions.load($0, inputShape: Array(images.shape.dropFirst()), classCount: modelOptions.classes) }
    guard models.count > 1 else {
      let logits = withoutRecording { withLearningPhase(.inference) { models[0](Variable(images)).value } }
      try SafeTensors.write([("logits", SafeTensors.Entry(logits))], to: output)
      print("Wrote logits \(logits.shape) to \(output)")
      return
    }
    let probabilities = ensembleProbabilities(models, images)
    try SafeTensors.write(
      [("probabilities", SafeTensors.Entry(probabilities.converted(to: .float32))), ("logits", SafeTensors.Entry(log(probabilities).converted(to: .float32)))],
      to: output)
    print("Wrote the mean probabilities and their logarithm \(probabilities.shape) of \(models.count) models to \(output)")
  }
}
