@testable import Models
import Reprise
import TestSupport
import XCTest

/// DenseNet on tiny configurations: shapes, gradients, and memory-efficient equals plain.
final class DenseNetTests: XCTestCase {
  /// DenseNet-BC of depth 10 (one layer per block) or `layersPerBlock` layers per block, k = 2,
  /// on 2-channel 8x8 images.
  func tiny(bottleneck: Bool = true, dropRate: Double = 0, layersPerBlock: Int = 1) throws -> DenseNet {
    RandomGenerator.global = RandomGenerator(seed: 42)
    return DenseNet(
      try .cifar(depth: 4 + (bottleneck ? 6 : 3) * layersPerBlock, growthRate: 2, bottleneck: bottleneck, dropRate: dropRate, classCount: 3,
        inputChannels: 2))
  }

  func testForwardShapeAndNames() throws {
    let model = try tiny()
    XCTAssertEqual(model(Variable(Tensor(randomNormal: [4, 2, 8, 8]))).shape, [4, 3])
    let names = model.namedParameters.map(\.name)
    XCTAssertEqual(names.first, "features.conv0.weight")
    XCTAssertTrue(names.contains("features.denseblock1.denselayer1.norm1.weight"))
    XCTAssertTrue(names.contains("features.denseblock2.denselayer1.conv2.weight"))
    XCTAssertTrue(names.contains("features.transition1.conv.weight"))
    XCTAssertEqual(names.suffix(4), ["features.norm5.weight", "features.norm5.bias", "classifier.weight", "classifier.bias"])
    XCTAssertTrue(model.namedBuffers.map(\.name).contains("features.denseblock3.denselayer1.norm2.running_var"))
  }

  func testGradientsOfPlainAndBCModels() throws {
    for bottleneck in [true, false] {
      let model = try tiny(bottleneck: bottleneck)
      model.convert(to: .float64)
      var random = RandomGenerator(seed: 1)
      let x = randomLeaf([2, 2, 4, 4], using: &random)
      let labels = [0, 2]
      try withCheckpointPlan(model.memoryEfficientPlan(), in: model) {
        assertGradientsCorrect(at: [x] + model.parameters, "bottleneck \(bottleneck)") { crossEntropy(model(x), labels: labels) }
      }
    }
  }

  /// Every plan gives the gradients and running statistics of no plan, bit for bit, with dropout
  /// inside the regions, whichever layers keep their bottleneck outputs, plain DenseNet and BC.
  func testPlansEqualPlain() throws {
    let model = try tiny(dropRate: 0.2, layersPerBlock: 2)
    let fractions = [0, 1].map { ("memory-efficient, kept fraction \($0)", model.memoryEfficientPlan(keptBottleneckFraction: $0)) }
    try assertPlansEqualPlain(imageShape: [2, 8, 8], "DenseNet-BC", extra: fractions) { try tiny(dropRate: 0.2, layersPerBlock: 2) }
    try assertPlansEqualPlain(imageShape: [2, 8, 8], "DenseNet") { try tiny(bottleneck: false, dropRate: 0.2, layersPerBlock: 2) }
  }

  /// The memory-efficient plan makes every dense layer a region; the last floor(fraction x n) layers
  /// of each block keep their bottleneck outputs. Fractions outside [0, 1] are refused.
  func testKeptBottleneckFractionChoosesTheLastLayersOfEachBlock() throws {
    let model = try tiny(layersPerBlock: 3)
    func kept(_ plan: CheckpointPlan) -> [[Bool]] {
      let layers = plan.regions.filter { $0.first.contains("denselayer") }
      XCTAssertEqual(layers.count, 9, "every dense layer is a region")
      return (0..<3).map { b in layers[(3 * b)..<(3 * b + 3)].map { !$0.policy.savedNames.isEmpty } }
    }
    XCTAssertEqual(kept(model.memoryEfficientPlan(keptBottleneckFraction: 0.7)), Array(repeating: [false, true, true], count: 3))
    XCTAssertEqual(kept(model.memoryEfficientPlan(keptBottleneckFraction: 0)), Array(repeating: [false, false, false], count: 3))
    XCTAssertEqual(kept(model.memoryEfficientPlan(keptBottleneckFraction: 1)), Array(repeating: [true, true, true], count: 3))
    XCTAssertEqual(model.memoryEfficientPlan(keptBottleneckFraction: 1).regions.first?.policy, .saving(names: ["bottleneck"]))
    // Without a bottleneck there is nothing to keep.
    XCTAssertEqual(kept(try tiny(bottleneck: false, layersPerBlock: 3).memoryEfficientPlan(keptBottleneckFraction: 1)), Array(repeating: [false, false, false], count: 3))
    assertStops(withMessageContaining: ["DenseNet: kept bottleneck fraction 1.5 is not in [0, 1]"], in: self) {
      _ = model.memoryEfficientPlan(keptBottleneckFraction: 1.5)
    }
  }

  /// A kept bottleneck output costs its own size in memory: after the forward pass (the tape alive)
  /// a plan that keeps every one holds their bytes more than one that keeps none, to within an
  /// eighth (the two also differ in small tensors such as batch statistics).
  func testKeptBottleneckOutputsCostTheirSize() throws {
    func liveAfterForward(_ fraction: Double) throws -> Int {
      let model = try tiny(layersPerBlock: 3)
      var random = RandomGenerator(seed: 3)
      let x = Variable(Tensor(randomNormal: [4, 2, 8, 8], using: &random))
      Allocator.releaseCache()
      let base = Allocator.liveBytes
      let loss = try withCheckpointPlan(model.memoryEfficientPlan(keptBottleneckFraction: fraction), in: model) {
        crossEntropy(model(x), labels: [0, 1, 2, 1])
      }
      defer { withExtendedLifetime(loss) {} }
      return Allocator.liveBytes - base
    }
    // 4 images, 4k = 8 channels, 3 layers per block at 8x8, 4x4 and 2x2, Float32.
    let bottlenecks = 3 * 4 * 8 * (64 + 16 + 4) * 4
    let extra = try liveAfterForward(1) - liveAfterForward(0)
    XCTAssertEqual(Double(extra), Double(bottlenecks), accuracy: Double(bottlenecks) / 8)
  }

  /// Without dropout a transition pools before its convolution: in Float64 its output equals the
  /// papers' BN-ReLU, conv 1x1, average pool to rounding, and its gradients are checked numerically
  /// with the whole model in `testGradientsOfPlainAndBCModels`.
  func testTransitionPoolsBeforeItsConvolution() throws {
    let model = try tiny()
    model.convert(to: .float64)
    let transition = try XCTUnwrap(model.stages.first { $0.name == "features.transition1" }?.layer as? Transition)
    var random = RandomGenerator(seed: 5)
    let x = Variable(Tensor(randomNormal: [3, 6, 8, 8], using: &random).converted(to: .float64))
    let pooledFirst = transition(x).value
    let papers = avgPool2d(transition.conv(transition.norm(x, applyingReLU: true)), kernelSize: 2).value
    XCTAssertEqual(pooledFirst.shape, [3, 3, 4, 4])
    assertClose(pooledFirst, papers, relativeTolerance: 1e-12, absoluteTolerance: 1e-12)
  }

  /// Multiply-accumulates counted as the papers and torchvision define the
  /// model: DenseNet-BC-100 (k = 12) at 32x32 is 287.9 M. Reprise pools first (``Transition``), so
  /// it computes a quarter of the transitions' convolutions: 287.9 M less three quarters of the
  /// full-size products (216 -> 108 at 32x32 and 300 -> 150 at 16x16).
  func testMultiplyAccumulates() throws {
    let model = withoutRecording { DenseNet(try! .cifar(depth: 100, growthRate: 12, bottleneck: true)) }
    let stages = model.summary(inputShape: [1, 3, 32, 32])
    let macs = stages.reduce(0) { $0 + $1.multiplyAccumulates }, computed = stages.reduce(0) { $0 + $1.computedMultiplyAccumulates }
    let fullSizeTransitions = [216 * 108 * 32 * 32, 300 * 150 * 16 * 16]
    XCTAssertEqual(Double(macs) / 1e6, 287.9, accuracy: 0.05)
    XCTAssertEqual(macs - computed, fullSizeTransitions.reduce(0, +) * 3 / 4)
    let transitions = stages.filter { $0.name.contains("transition") }
    XCTAssertEqual(transitions.map(\.multiplyAccumulates), fullSizeTransitions)
    XCTAssertEqual(transitions.map(\.computedMultiplyAccumulates), fullSizeTransitions.map { $0 / 4 })
    for stage in stages where !stage.name.contains("transition") {
      XCTAssertEqual(stage.multiplyAccumulates, stage.computedMultiplyAccumulates, stage.name)
    }
  }

  /// DenseNet-121 at 224x224: 2.834 G multiply-accumulates as torchvision and the paper count it.
  func testDenseNet121MultiplyAccumulatesAsDefined() throws {
    let model = withoutRecording { DenseNet(.densenet121) }
    let macs = model.summary(inputShape: [1, 3, 224, 224]).reduce(0) { $0 + $1.multiplyAccumulates }
    XCTAssertEqual(Double(macs) / 1e9, 2.834, accuracy: 0.0005)
  }

}
