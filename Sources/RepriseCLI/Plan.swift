import ArgumentParser
import Foundation
import Reprise

/// `reprise plan`: the fastest checkpoint plan of a model within a memory budget.
struct Plan: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Find the fastest checkpoint plan of a model within a memory budget, and measure it.",
    discussion: """
      The planner profiles training steps of random batches (every leaf unit keeping its tape, every leaf unit a \
      checkpoint region, and regions that keep tagged values), chooses per unit by dynamic programming, then runs \
      the plan and measures its peak. Peaks count tensor memory above the model's parameters: activations, \
      gradients and the SGD momentum buffers.
      """)

  @OptionGroup var modelOptions: ModelOptions
  @Option(help: "Start from the model state in this file; a file that records its network (a pruned one, say) needs no model options.")
  var weights: String?
  @Option(help: "Images per step.") var batchSize = 64
  @Option(help: "Input size [C, H, W] as C,H,W (default: the model's natural size, 3,32,32 for CIFAR models and 3,224,224 for ImageNet ones).") var inputSize: String?
  @Option(help: "Peak tensor memory to fit, as bytes or with a unit (400MiB, 1.5GiB, 2GB).") var memoryBudget: String?
  @Option(help: "The budget as a fraction of the way from the smallest reachable peak (0) to the plain peak (1), instead of --memory-budget.")
  var budgetFraction: Double?
  @Flag(help: "List the model's leaf units (the paths plans name) and exit.") var listUnits = false
  @OptionGroup var threadOptions: ThreadOptions
  @Option(help: "Element type of the model and data: float32 or float64.") var dtype: DType = .float32
  @Flag(help: "Print one JSON object instead of text.") var json = false

  func validate() throws {
    if let weights { try readable("--weights", weights) }
    try check("--batch-size", batchSize, in: 1...maximumBatchSize)
    if let memoryBudget { _ = try parsedBudget(memoryBudget) }
    if let budgetFraction, !(0...1).contains(budgetFraction) {
      throw ValidationError("--budget-fraction must be in [0, 1], got \(budgetFraction)")
    }
    if !listUnits && (memoryBudget == nil) == (budgetFraction == nil) {
      throw ValidationError("give one of --memory-budget and --budget-fraction")
    }
    try modelOptions.checkBatch(batchSize, try modelOptions.parsedInputShape(inputSize))
  }

  func run() throws {
    threadOptions.apply()
    let state = try weights.map(SavedModel.init)
    let (model, shape, classes) = try modelOptions.makeForRandomData(inputSize: inputSize, state: state)
    if listUnits {
      for unit in model.leafUnits { print(unit.path) }
      return
    }
    model.convert(to: dtype)
    let optimizer = SGD(model.parameters, learningRate: 0.1, momentum: 0.9, weightDecay: 1e-4, nesterov: true)
    let planner = PlanOptions().planner(
      for: model, batchShape: [batchSize] + shape, classCount: classes, reservedBytes: optimizer.stateBytes)
    let profile = planner.profile()
    let budget =
      try memoryBudget.map { try parsedBudget($0) }
      ?? profile.minimumPeakBytes + Int(budgetFraction! * Double(profile.plainPeakBytes - profile.minimumPeakBytes))
    let result = try planner.plan(within: budget, profile: profile)
    if json {
      try printJSON(PlannedJSON(result, model: modelOptions.networkLabel(for: state), batchSize: batchSize))
    } else {
      print("\(modelOptions.networkLabel(for: state)), batch \(batchSize), input \(shape), \(dtype), \(Parallel.threadCount) threads")
      print(plannedSummary(result))
      print(result.plan.description.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
    }
  }
}

/// Two lines on a planned result: budget, predicted and measured peak, step time, and the range.
func plannedSummary(_ r: CheckpointPlanner.Result) -> String {
  """
  Checkpoint plan within \(formatBytes(r.budgetBytes)): \(r.plan.regions.count) region\(r.plan.regions.count == 1 ? "" : "s"), predicted peak \(formatBytes(r.predictedPeakBytes)), \
  measured \(formatBytes(r.peakBytes)), step \(String(format: "%.3f", r.stepSecondsMedian)) s
    (reachable peaks: from \(formatBytes(r.minimumPeakBytes)), the smallest, to \(formatBytes(r.plainPeakBytes)) without checkpointing)
  """
}
