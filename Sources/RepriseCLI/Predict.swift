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
  @OptionGroup var threadOptions: ThreadOptions

  func validate() throws {
    try readable("--weights", weights)
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
    try modelOptions.checkInput(Array(entry.shape.dropFirst()), source: input)
    let model = try modelOptions.make(inputChannels: images.shape[1], classCount: modelOptions.classes ?? modelOptions.model.defaultClassCount)
    try model.loadState(from: weights)
    let logits = withoutRecording { withLearningPhase(.inference) { model(Variable(images)).value } }
    try SafeTensors.write([("logits", SafeTensors.Entry(logits))], to: output)
    print("Wrote logits \(logits.shape) to \(output)")
  }
}
