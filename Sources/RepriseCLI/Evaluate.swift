import ArgumentParser
import Reprise

/// `reprise eval`: loss and accuracy of saved weights on the test split.
struct Evaluate: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "eval", abstract: "Loss and accuracy of saved weights on the test split.")

  @OptionGroup var modelOptions: ModelOptions
  @OptionGroup var dataOptions: DataOptions
  @Option(help: "The model state (safetensors, PyTorch keys).") var weights: String
  @Option(help: "Images per forward pass.") var batchSize = 500
  @Option(help: "Threads for OpenBLAS and Reprise's loops.") var threads: Int?

  func validate() throws {
    guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
    if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
  }

  func run() throws {
    if let threads { Parallel.setThreadCount(threads) }
    let test = try dataOptions.load(.test)
    let model = try modelOptions.make(inputChannels: test.imageShape[0], classCount: test.classCount)
    try model.loadState(from: weights)
    let metrics = evaluate(model, on: test, batchSize: batchSize)
    print(String(format: "test loss %.4f, test accuracy %.2f%% (%d images)", metrics.loss, 100 * metrics.accuracy, test.count))
  }
}
