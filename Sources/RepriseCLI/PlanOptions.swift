import ArgumentParser
import Foundation
import Reprise

/// How a command checkpoints its model: the hand-made memory-efficient plan, a memory budget the
/// planner fits, or Chen et al.'s segments. At most one.
struct PlanOptions: ParsableArguments {
  @Option(
    help: "Peak tensor memory of a training step to fit, everything live counted (parameters, optimiser state, the step's tensors), as bytes or with a unit (400MiB, 1.5GiB, 2GB); the planner finds the fastest checkpoint plan within it.")
  var memoryBudget: String?

  @Option(help: "Checkpoint the model's composition of units in N segments (PyTorch's checkpoint_sequential; sqrt(units) is Chen et al.'s choice).")
  var checkpointSegments: Int?

  @Option(help: "A checkpoint plan in a JSON file: what `reprise plan --json` prints, or its `plan` array of regions (`first`, optional `last`, `savedNames`, `savedOperations`).")
  var plan: String?

  @Option(help: "With --memory-efficient on a DenseNet-BC: the fraction of each dense block's layers, the last ones, whose regions keep their bottleneck output instead of recomputing it (0: least memory, 1: least time).")
  var keptBottleneckFraction = 0.5

  func validate() throws {
    if let checkpointSegments, checkpointSegments < 1 {
      throw ValidationError("--checkpoint-segments must be at least 1, got \(checkpointSegments)")
    }
    if [memoryBudget != nil, checkpointSegments != nil, plan != nil].filter({ $0 }).count > 1 {
      throw ValidationError("--memory-budget, --checkpoint-segments and --plan are three plans; give one")
    }
    if let plan { _ = try readPlan(plan) }
    if let memoryBudget { _ = try parsedBudget(memoryBudget) }
    if !(0...1).contains(keptBottleneckFraction) {
      throw ValidationError("--kept-bottleneck-fraction must be in [0, 1], got \(keptBottleneckFraction)")
    }
  }

  /// The budget in bytes.
  var budgetBytes: Int? { memoryBudget.flatMap { try? parsedBudget($0) } }

  /// Whether a plan other than the memory-efficient one was asked for.
  var choosesPlan: Bool { memoryBudget != nil || checkpointSegments != nil || plan != nil }

  /// The plan for `model`: the budget's (planned by training steps on random batches of
  /// `batchShape`), the segments', the memory-efficient one, or none.
  func plan(
    for model: any Network, memoryEfficient: Bool, batchShape: [Int], classCount: Int, reservedBytes: Int
  ) throws -> (plan: CheckpointPlan, planned: CheckpointPlanner.Result?) {
    if let budget = budgetBytes {
      let result = try planner(for: model, batchShape: batchShape, classCount: classCount, reservedBytes: reservedBytes).plan(within: budget)
      return (result.plan, result)
    }
    if let checkpointSegments { return (.segments(checkpointSegments, of: model), nil) }
    if let plan { return (try readPlan(plan), nil) }
    guard memoryEfficient else { return (.none, nil) }
    if let densenet = model as? DenseNet { return (densenet.memoryEfficientPlan(keptBottleneckFraction: keptBottleneckFraction), nil) }
    return (model.memoryEfficientPlan(), nil)
  }

  /// A planner that measures forward and backward passes of a random batch.
  func planner(for model: any Network, batchShape: [Int], classCount: Int, reservedBytes: Int) -> CheckpointPlanner {
    var random = RandomGenerator(seed: 7)
    let dtype = model.parameters.first?.dtype ?? .float32
    let images = Tensor(randomNormal: batchShape, dtype: dtype, using: &random)
    let labels = (0..<batchShape[0]).map { _ in Int(random.next() % UInt64(classCount)) }
    return CheckpointPlanner(network: model, reservedBytes: reservedBytes) {
      let logits = withLearningPhase(.training) { model(Variable(images)) }
      crossEntropy(logits, labels: labels).backward()
    }
  }

  /// A label for messages.
  func label(memoryEfficient: Bool, model: ModelName) -> String {
    if let memoryBudget { return "planned within \(memoryBudget)" }
    if let checkpointSegments { return "\(checkpointSegments) checkpoint segments" }
    if let plan { return "the plan in \(plan)" }
    guard memoryEfficient else { return "plain" }
    return model.rawValue.hasPrefix("densenet") && model != .densenet
      ? "memory-efficient, kept bottleneck fraction \(keptBottleneckFraction)" : "memory-efficient"
  }
}

/// `400MiB`, `1.5GiB`, `2GB`, `512KiB` or a number of bytes, given to `option`.
func parsedBudget(_ text: String, option: String = "--memory-budget") throws -> Int {
  let units: [(String, Double)] = [
    ("KiB", 1024), ("MiB", 1024 * 1024), ("GiB", 1024 * 1024 * 1024), ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("B", 1),
  ]
  let trimmed = text.trimmingCharacters(in: .whitespaces)
  let (unit, scale) = units.first { trimmed.hasSuffix($0.0) } ?? ("", 1)
  let number = trimmed.dropLast(unit.count).trimmingCharacters(in: .whitespaces)
  guard let value = Double(number), value.isFinite, value > 0, value * scale < 1e18 else {
    throw ValidationError("\(option) must be a positive size such as 400MiB, 1.5GiB or 2000000000, got '\(text)'")
  }
  return Int(value * scale)
}
