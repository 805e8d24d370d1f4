import Reprise
import XCTest

/// The plans every model family is checked under: its hand-made memory-efficient plan, every leaf
/// unit a region keeping nothing, every leaf unit a region keeping its convolutions' and matrix
/// products' outputs, Chen et al.'s segments, and the planner's choice halfway between the
/// smallest and the plain peak.
public func standardPlans(for network: any Network, imageShape: [Int]) -> [(String, CheckpointPlan)] {
  var random = RandomGenerator(seed: 2)
  let x = Tensor(randomNormal: [4] + imageShape, using: &random)
  let planner = CheckpointPlanner(network: network) { crossEntropy(network(Variable(x)), labels: [0, 1, 2, 1]).backward() }
  let profile = planner.profile()
  let halfway = (profile.minimumPeakBytes + profile.plainPeakBytes) / 2
  return [
    ("memory-efficient", network.memoryEfficientPlan()),
    ("every unit", .everyUnit(of: network)),
    ("every unit, dots saveable", .units(of: network) { $0.isLeaf ? .dotsSaveable : nil }),
    ("3 segments", .segments(3, of: network)),
    ("planned halfway", (try? planner.plan(within: halfway, profile: profile).plan) ?? .none),
  ]
}

/// Asserts that one training step of the network `make()` gives bit-identical parameter gradients
/// and buffers (running statistics) under each plan of ``standardPlans(for:imageShape:)`` and the
/// `extra` ones as without checkpointing (contract rule 8). Plans name units by path, so they are
/// made on one network and applied to fresh ones built the same way.
///
/// Each network is built after seeding the global generator with 42 and run after seeding it with 9
/// (so dropout, shake-shake and stochastic depth draw the same), on the same batch of 4 images
/// shaped `imageShape` and labels 0, 1, 2, 1. Parameters that received no gradient count as zeros.
public func assertPlansEqualPlain(
  imageShape: [Int], _ context: @autoclosure () -> String = "", extra: [(String, CheckpointPlan)] = [],
  file: StaticString = #filePath, line: UInt = #line, _ make: () throws -> any Network
) throws {
  func step(_ plan: CheckpointPlan) throws -> [Tensor] {
    RandomGenerator.global = RandomGenerator(seed: 42)
    let model = try make()
    RandomGenerator.global = RandomGenerator(seed: 9)
    var random = RandomGenerator(seed: 2)
    let x = Variable(Tensor(randomNormal: [4] + imageShape, using: &random))
    try withCheckpointPlan(plan, in: model) { crossEntropy(model(x), labels: [0, 1, 2, 1]).backward() }
    return model.parameters.map { $0.grad ?? Tensor(zeros: $0.shape) } + model.namedBuffers.map(\.variable.value)
  }
  let plain = try step(.none)
  RandomGenerator.global = RandomGenerator(seed: 42)
  let plans = standardPlans(for: try make(), imageShape: imageShape) + extra
  for (name, plan) in plans {
    XCTAssertFalse(plan.regions.isEmpty && name != "planned halfway", "\(context()) plan '\(name)' has no regions", file: file, line: line)
    let checked = try step(plan)
    XCTAssertEqual(plain.count, checked.count, "\(context()) \(name)", file: file, line: line)
    for (i, (a, b)) in zip(plain, checked).enumerated() {
      assertBitIdentical(a, b, "\(context()) plan '\(name)', tensor \(i)", file: file, line: line)
    }
  }
}
