import ArgumentParser
import Reprise
import RepriseDistributed

/// `reprise eval`: loss and accuracy of saved weights on the test split; of several, each one's and
/// their ensemble's.
struct Evaluate: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "eval",
    abstract: "Loss and accuracy of saved weights on the test split; given several files, each model's and their ensemble's (the mean of their softmax outputs).")

  @OptionGroup var modelOptions: ModelOptions
  @OptionGroup var dataOptions: DataOptions
  @Option(
    parsing: .upToNextOption,
    help: "The model state (safetensors, PyTorch keys), or several (snapshots, say) to evaluate as an ensemble.")
  var weights: [String]
  @Option(help: "Images per forward pass.") var batchSize = 500
  @OptionGroup var threadOptions: ThreadOptions
  @Flag(help: "Split the test images across the processes mpirun starts and add their counts: the same accuracy as one process; rank 0 prints.")
  var distributed = false

  func validate() throws {
    try check("--batch-size", batchSize, in: 1...maximumBatchSize)
    guard !weights.isEmpty else { throw ValidationError("--weights needs at least one file") }
    for path in weights { try readable("--weights", path) }
  }

  func run() throws {
    let communicator = distributed ? try Communicator.world() : nil
    threadOptions.apply(sharingCoresWith: communicator.map(localProcessCount) ?? 1)
    let test = try dataOptions.load(.test, classes: modelOptions.classes)
    let models = try weights.map { try modelOptions.load($0, inputShape: test.imageShape, classCount: test.classCount) }
    func line(_ metrics: Metrics) -> String {
      String(format: "test loss %.4f, test accuracy %.2f%% (%d images)", metrics.loss, 100 * metrics.accuracy, test.count)
    }
    guard models.count > 1 else {
      let metrics = communicator.map { evaluate(models[0], on: test, batchSize: batchSize, communicator: $0) } ?? evaluate(models[0], on: test, batchSize: batchSize)
      if communicator?.isRoot ?? true { print(line(metrics)) }
      return
    }
    let (members, ensemble) =
      communicator.map { evaluateEnsemble(models, on: test, batchSize: batchSize, communicator: $0) }
      ?? evaluateEnsemble(models, on: test, batchSize: batchSize)
    guard communicator?.isRoot ?? true else { return }
    for (path, metrics) in zip(weights, members) { print("\(path): \(line(metrics))") }
    print("ensemble of \(models.count): \(line(ensemble))")
  }
}
