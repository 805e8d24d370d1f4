import Reprise
import TestSupport
import XCTest

/// Plans over chain structure: paths, spans across nested compositions, segments, errors, and the
/// planner on a small network.
final class CheckpointPlanTests: XCTestCase {
  override func setUp() { RandomGenerator.global = RandomGenerator(seed: 3) }

  /// conv, BN, ReLU, a nested block of two convolutions, pooling, linear.
  func network(width c: Int = 4) -> Sequential {
    Sequential([
      ("stem", Sequential([Conv2d(inputChannels: 2, outputChannels: c, kernelSize: 3, padding: 1), BatchNorm2d(channels: c), ReLU()])),
      ("block", Sequential([Conv2d(inputChannels: c, outputChannels: c, kernelSize: 3, padding: 1), ReLU(), Conv2d(inputChannels: c, outputChannels: c, kernelSize: 1)])),
      ("pool", GlobalAvgPool2d()), ("fc", Linear(inputFeatures: c, outputFeatures: 3)),
    ])
  }

  func gradients(_ model: Sequential, _ plan: CheckpointPlan) throws -> [Tensor] {
    var random = RandomGenerator(seed: 4)
    let x = Variable(Tensor(randomNormal: [3, 2, 6, 6], using: &random))
    model.zeroGradients()
    try withCheckpointPlan(plan, in: model) { crossEntropy(model(x), labels: [0, 2, 1]).backward() }
    return model.parameters.map { $0.grad! }
  }

  func testUnitsAndLeavesFollowTheChainStructure() {
    let model = network()
    XCTAssertEqual(model.allUnits.map(\.path), ["stem", "stem.0", "stem.1", "stem.2", "block", "block.0", "block.1", "block.2", "pool", "fc"])
    XCTAssertEqual(model.leafUnits.map(\.path), ["stem.0", "stem.1", "stem.2", "block.0", "block.1", "block.2", "pool", "fc"])
  }

  /// Regions of one unit, of a whole nested composition, across its boundary, and segments all give
  /// the unplanned gradients; a region saves what it should (fewer bytes live after the forward pass).
  func testPlansGiveTheSameGradients() throws {
    let model = network()
    let plain = try gradients(model, .none)
    let plans: [CheckpointPlan] = [
      CheckpointPlan(regions: [.init(first: "stem.0"), .init(first: "block.1")]),
      CheckpointPlan(regions: [.init(first: "block")]),
      CheckpointPlan(regions: [.init(first: "stem.1", last: "block.1", policy: .dotsSaveable)]),
      CheckpointPlan(regions: [.init(first: "block"), .init(first: "block.0")]),  // nested
      .segments(3, of: model), .everyUnit(of: model),
    ]
    for plan in plans {
      for (a, b) in zip(plain, try gradients(model, plan)) { assertBitIdentical(a, b, "\(plan)") }
    }
    XCTAssertEqual(
      CheckpointPlan.segments(3, of: model).regions,
      [.init(first: "stem.0", last: "stem.1"), .init(first: "stem.2", last: "block.1")], "8 steps in 3 segments, the last unchecked")
  }

  func testPlansThatDoNotFitAreErrors() {
    let model = network()
    XCTAssertThrowsError(try CheckpointPlan(regions: [.init(first: "stem.7")]).resolved(in: model)) {
      XCTAssertEqual($0 as? CheckpointPlanError, .unknownUnit("stem.7"))
    }
    XCTAssertThrowsError(try CheckpointPlan(regions: [.init(first: "block.2", last: "stem.0")]).resolved(in: model)) {
      XCTAssertEqual($0 as? CheckpointPlanError, .notConsecutive("block.2", "stem.0"))
    }
  }

  /// The planner's plan fits its budget as measured, and so does a step run with it, the
  /// parameters and everything else live counted; it recomputes less as the budget grows, gives
  /// the unplanned gradients, and a budget below the smallest peak is an error naming it.
  func testPlannerFitsBudgets() throws {
    let model = network(width: 16)
    var random = RandomGenerator(seed: 5)
    // Maps of a mebibyte: mapped buffers are charged their exact size, so the measured peaks do not
    // depend on which cached buffers earlier profiled steps left (small ones serve requests of up
    // to half their size and are charged in full).
    let x = Tensor(randomNormal: [4, 2, 64, 64], using: &random)
    let planner = CheckpointPlanner(network: model) { crossEntropy(model(Variable(x)), labels: (0..<4).map { $0 % 3 }).backward() }
    // What the caller holds besides the step (a data set, say), larger than the step's own peak.
    let held = Tensor(zeros: [1 << 22])
    let profile = planner.profile()
    XCTAssertLessThan(profile.minimumPeakBytes, profile.plainPeakBytes)
    let parameterBytes = model.parameters.reduce(0) { $0 + $1.value.count * 4 }
    XCTAssertGreaterThanOrEqual(profile.heldBytes, parameterBytes + held.count * 4)
    XCTAssertEqual(profile.paths, model.leafUnits.map(\.path))
    var previousRegions = Int.max
    for fraction in [0.0, 0.5, 1.0] {
      let budget = profile.minimumPeakBytes + Int(fraction * Double(profile.plainPeakBytes - profile.minimumPeakBytes))
      let result = try planner.plan(within: budget, profile: profile)
      XCTAssertLessThanOrEqual(result.peakBytes, budget, "fraction \(fraction)")
      model.zeroGradients()
      Allocator.resetPeak()
      try withCheckpointPlan(result.plan, in: model) { crossEntropy(model(Variable(x)), labels: (0..<4).map { $0 % 3 }).backward() }
      // Half a mebibyte for which cached buffers serve which requests, which moves live bytes a little.
      XCTAssertLessThanOrEqual(Allocator.peakBytes, budget + (1 << 19), "a planned step's whole peak, fraction \(fraction)")
      XCTAssertLessThanOrEqual(result.plan.regions.count, previousRegions, "fraction \(fraction)")
      previousRegions = result.plan.regions.count
      model.zeroGradients()
      let planned = try gradients(model, result.plan), plain = try gradients(model, .none)
      for (a, b) in zip(plain, planned) { assertBitIdentical(a, b, "fraction \(fraction)") }
    }
    XCTAssertEqual(try planner.plan(within: profile.plainPeakBytes, profile: profile).plan, .none)
    withExtendedLifetime(held) {}
    XCTAssertThrowsError(try planner.plan(within: profile.minimumPeakBytes - 1, profile: profile)) { error in
      XCTAssertEqual(error as? CheckpointPlanningError, .budgetTooSmall(budget: profile.minimumPeakBytes - 1, minimum: profile.minimumPeakBytes))
      XCTAssertTrue("\(error)".contains("\(profile.minimumPeakBytes) bytes"), "\(error)")
    }
  }

  /// A leaf unit with convolutions inside (conv, BN, ReLU, conv, without biases) gets a third
  /// option, a region that keeps its convolutions' outputs: it keeps more than the region that keeps
  /// nothing and less than the unit's tape. A unit that runs no convolution or matrix product (ReLU)
  /// gets no such option. A plan with the option gives the unplanned gradients.
  func testPlannerOffersKeepingConvolutionOutputs() throws {
    final class ConvPair: Layer {
      let conv1 = Conv2d(inputChannels: 8, outputChannels: 8, kernelSize: 3, padding: 1, bias: false), norm = BatchNorm2d(channels: 8)
      let conv2 = Conv2d(inputChannels: 8, outputChannels: 8, kernelSize: 3, padding: 1, bias: false)
      var children: [(name: String, module: any Module)] { [("conv1", conv1), ("norm", norm), ("conv2", conv2)] }
      func callAsFunction(_ x: Variable) -> Variable { conv2(relu(norm(conv1(x)))) }
    }
    let model = Sequential([
      ("stem", Conv2d(inputChannels: 2, outputChannels: 8, kernelSize: 3, padding: 1)), ("pair", ConvPair()), ("relu", ReLU()),
      ("pool", GlobalAvgPool2d()), ("fc", Linear(inputFeatures: 8, outputFeatures: 3)),
    ])
    var random = RandomGenerator(seed: 7)
    // Maps of a mebibyte, charged their exact size (see testPlannerFitsBudgets).
    let x = Tensor(randomNormal: [8, 2, 64, 64], using: &random), labels = (0..<8).map { $0 % 3 }
    let planner = CheckpointPlanner(network: model) { crossEntropy(model(Variable(x)), labels: labels).backward() }
    let profile = planner.profile()
    let pair = try XCTUnwrap(profile.paths.firstIndex(of: "pair")), activation = try XCTUnwrap(profile.paths.firstIndex(of: "relu"))
    XCTAssertEqual(profile.policies[pair], [nil, .nothing, .dotsSaveable])
    let options = profile.chain.units[pair]
    XCTAssertLessThan(options[1].keptBytes, options[2].keptBytes, "kept bytes: keeping nothing, keeping the convolutions' outputs")
    XCTAssertLessThan(options[2].keptBytes, options[0].keptBytes, "kept bytes: keeping the convolutions' outputs, the tape")
    XCTAssertEqual(profile.policies[activation], [nil, .nothing])
    let kept = try gradients(model, CheckpointPlan(regions: [.init(first: "pair", policy: .dotsSaveable)]))
    for (a, b) in zip(try gradients(model, .none), kept) { assertBitIdentical(a, b) }
  }

  /// The saved-tensor report lists what the tape holds after the forward pass, largest first, by
  /// unit path: with no plan the intermediate maps; with one region over the convolutional part,
  /// only what that region's memo keeps (its batch statistics: its output is pooled, and pooling
  /// keeps nothing) and the head's small tensors. What it lists is within what the forward pass added.
  func testSavedTensorsReportWhatTheTapeHolds() throws {
    let model = network(width: 16)
    var random = RandomGenerator(seed: 6)
    let x = Variable(Tensor(randomNormal: [8, 2, 32, 32], using: &random))
    func report(_ plan: CheckpointPlan) throws -> SavedTensors {
      try withCheckpointPlan(plan, in: model) { savedTensors(naming: model.unitPaths) { model(x) }.report }
    }
    let plain = try report(.none), regions = try report(CheckpointPlan(regions: [.init(first: "stem.0", last: "block.2")]))
    let paths = Set(model.allUnits.map(\.path))
    for r in [plain, regions] {
      XCTAssertEqual(r.entries.map(\.bytes), r.entries.map(\.bytes).sorted(by: >), "largest first")
      XCTAssertLessThanOrEqual(r.listedBytes, r.totalBytes)
      XCTAssertTrue(r.entries.allSatisfy { paths.contains($0.path) || $0.path == "stem.0 ... block.2" }, "\(r)")
    }
    let map = 8 * 16 * 32 * 32 * 4
    XCTAssertTrue(plain.entries.contains { $0.path == "stem.0" && $0.bytes == map }, "\(plain)")
    let region = regions.entries.first { $0.operation == "checkpoint 'stem.0 ... block.2'" }
    XCTAssertEqual(region?.path, "stem.0 ... block.2", "\(regions)")
    XCTAssertEqual(region?.bytes, 2 * 16 * 4, "the memo's batch mean and variance, \(regions)")
    XCTAssertFalse(regions.entries.contains { $0.bytes >= map }, "no feature map is held: \(regions)")
    XCTAssertLessThan(regions.listedBytes * 100, plain.listedBytes)
  }
}
