import ArgumentParser
import Foundation
import Reprise

/// `reprise memory`: what the tape holds for the backward pass after one training forward pass.
struct Memory: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "List what the tape holds after a training forward pass, by operation and module path, largest first.")

  @OptionGroup var modelOptions: ModelOptions
  @Option(help: "Start from the model state in this file; a file that records its network (a pruned one, say) needs no model options.")
  var weights: String?
  @Option(help: "Images per batch.") var batchSize = 64
  @Option(help: "Input size [C, H, W] as C,H,W (default: the model's natural size, 3,32,32 for CIFAR models and 3,224,224 for ImageNet ones).") var inputSize: String?
  @Flag(help: "The model's hand-made checkpoint plan (DenseNet: every dense layer a region over the shared feature buffer; ResNets: every block; SeqResNets: every filter). Off unless given, as for bench; train uses it unless told --no-memory-efficient.")
  var memoryEfficient = false
  @OptionGroup var planOptions: PlanOptions
  @Option(help: "Entries to print (the totals count all).") var top = 25
  @OptionGroup var threadOptions: ThreadOptions
  @Flag(help: "Print one JSON object (every entry) instead of text.") var json = false

  func validate() throws {
    if let weights { try readable("--weights", weights) }
    try check("--batch-size", batchSize, in: 1...maximumBatchSize)
    try check("--top", top, in: 0...1_000_000)
    if memoryEfficient && planOptions.choosesPlan {
      throw ValidationError("--memory-efficient is a plan of its own; drop it or the other plan option")
    }
    try modelOptions.checkBatch(batchSize, try modelOptions.parsedInputShape(inputSize))
  }

  func run() throws {
    threadOptions.apply()
    let state = try weights.map(SavedModel.init)
    let (model, shape, classes) = try modelOptions.makeForRandomData(inputSize: inputSize, state: state)
    let optimizer = SGD(model.parameters, learningRate: 0.1, momentum: 0.9, weightDecay: 1e-4, nesterov: true)
    let (plan, _) = try planOptions.plan(
      for: model, memoryEfficient: memoryEfficient, batchShape: [batchSize] + shape, classCount: classes, reservedBytes: optimizer.stateBytes)
    var random = RandomGenerator(seed: 1)
    let images = Variable(Tensor(randomNormal: [batchSize] + shape, using: &random))
    let report = try withCheckpointPlan(plan, in: model) {
      withLearningPhase(.training) { savedTensors(naming: model.unitPaths) { model(images) }.report }
    }
    if json {
      struct Entry: Encodable { var operation: String, path: String, shapes: [[Int]], bytes: Int }
      struct Output: Encodable { var model: String, batchSize: Int, regions: Int, totalBytes: Int, listedBytes: Int, entries: [Entry] }
      try printJSON(Output(
        model: modelOptions.networkLabel(for: state), batchSize: batchSize, regions: plan.regions.count, totalBytes: report.totalBytes,
        listedBytes: report.listedBytes,
        entries: report.entries.map { Entry(operation: $0.operation, path: $0.path, shapes: $0.shapes, bytes: $0.bytes) }))
      return
    }
    print("\(modelOptions.networkLabel(for: state)), batch \(batchSize), input \(shape), \(planOptions.label(memoryEfficient: memoryEfficient, model: modelOptions.name(for: state)))")
    for e in report.entries.prefix(top) {
      let size = formatBytes(e.bytes).padding(toLength: 11, withPad: " ", startingAt: 0)
      print("  \(size) \(e.operation)  \(e.path.isEmpty ? "-" : e.path)  \(e.shapes.map { "\($0)" }.joined(separator: " "))")
    }
    if report.entries.count > top { print("  ... \(report.entries.count - top) more") }
    print("\(formatBytes(report.listedBytes)) in \(report.entries.count) operations' results of \(formatBytes(report.totalBytes)) held after the forward pass")
    print("(the rest: tensors no operation returned, such as masks, indices and batch statistics)")
  }
}
