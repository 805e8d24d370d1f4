import ArgumentParser
import Reprise
import RepriseDistributed

/// `reprise eval`: loss and accuracy of saved weights on the test split.
struct Evaluate: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "eval", abstract: "Loss and accuracy of saved weights on the test split.")

  @OptionGroup var modelOptions: ModelOptions
  @OptionGroup var dataOptions: DataOptions
  @Option(help: "The model state (safetensors, PyTorch keys).") var weights: String
  @Option(help: "Images per forward pass.") var batchSize = 500
  @OptionGroup var threadOptions: ThreadOptions
  @Flag(help: "Split the test images across the processes mpirun starts and add their counts: the same accuracy as one process; rank 0 prints.")
  var distributed = false

  func validate() throws {
    try check("--batch-size", batchSize, in: 1...maximumBatchSize)
    try readable("--weights", weights)
  }

  func run() throws {
    let communicator = distributed ? try Communicator.world() : nil
    threadOptions.apply(sharingCoresWith: communicator.map(localProcessCount) ?? 1)
    let test = try dataOptions.load(.test, classes: modelOptions.classes)
    try modelOptions.checkInput(test.imageShape, source: dataOptions.dataset)
    let model = try modelOptions.make(inputChannels: test.imageShape[0], classCount: test.classCount)
    try model.loadState(from: weights)
    let metrics = communicator.map { evaluate(model, on: test, batchSize: batchSize, communicator: $0) } ?? evaluate(model, on: test, batchSize: batchSize)
    guard communicator?.isRoot ?? true else { return }
    print(String(format: "test loss %.4f, test accuracy %.2f%% (%d images)", metrics.loss, 100 * metrics.accuracy, test.count))
  }
}
