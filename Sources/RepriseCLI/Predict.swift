import ArgumentParser
import Reprise

/// `reprise predict`: logits of saved weights for the images in a safetensors file.
struct Predict: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Logits for a safetensors tensor `input` [N, C, H, W] (float32), written as `logits` [N, classes].")

  @OptionGroup var modelOptions: ModelOptions
  @Option(help: "The model state (safetensors, PyTorch keys).") var weights: String
  @Option(help: "A safetensors file with a float32 tensor `input` [N, C, H, W].") var input: String
  @Option(help: "Where to write the safetensors file with `logits` [N, classes].") var output: String
  @Option(help: "Threads for OpenBLAS and Reprise's loops.") var threads: Int?

  func run() throws {
    if let threads { Parallel.setThreadCount(threads) }
    let entries = try SafeTensors.read(input).entries
    guard let entry = entries["input"], entry.dtype == "F32", entry.shape.count == 4 else {
      throw StateFileError.corrupt(input, "expected a float32 tensor 'input' of rank 4 [N, C, H, W], found \(entries.keys.sorted())")
    }
    let images = try entry.tensor(path: input)
    let classes = modelOptions.classes ?? modelOptions.defaultClassCount
    let model = try modelOptions.make(inputChannels: images.shape[1], classCount: classes)
    try model.loadState(from: weights)
    let logits = withoutRecording { withLearningPhase(.inference) { model(Variable(images)).value } }
    try SafeTensors.write([("logits", SafeTensors.Entry(logits))], to: output)
    print("Wrote logits \(logits.shape) to \(output)")
  }
}
