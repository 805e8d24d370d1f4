import Reprise
import TestSupport
import XCTest

/// DenseNet on tiny configurations: shapes, gradients, and memory-efficient equals plain.
final class DenseNetTests: XCTestCase {
  /// DenseNet-BC of depth 10 (one layer per block), k = 2, on 2-channel 8x8 images.
  func tiny(memoryEfficient: Bool, bottleneck: Bool = true, dropRate: Double = 0) throws -> DenseNet {
    RandomGenerator.global = RandomGenerator(seed: 42)
    return DenseNet(
      try .cifar(depth: bottleneck ? 10 : 7, growthRate: 2, bottleneck: bottleneck, dropRate: dropRate, classCount: 3, inputChannels: 2,
        memoryEfficient: memoryEfficient))
  }

  func testForwardShapeAndNames() throws {
    let model = try tiny(memoryEfficient: false)
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
      let model = try tiny(memoryEfficient: true, bottleneck: bottleneck)
      model.convert(to: .float64)
      var random = RandomGenerator(seed: 1)
      let x = randomLeaf([2, 2, 4, 4], using: &random)
      let labels = [0, 2]
      assertGradientsCorrect(at: [x] + model.parameters, "bottleneck \(bottleneck)") { crossEntropy(model(x), labels: labels) }
    }
  }

  /// Memory-efficient and plain DenseNet-BC give bit-identical gradients and running statistics,
  /// with dropout inside the checkpointed regions.
  func testMemoryEfficientEqualsPlain() throws {
    try assertMemoryEfficientEqualsPlain(imageShape: [2, 8, 8]) { try tiny(memoryEfficient: $0, dropRate: 0.2) }
  }

  /// Multiply-accumulates against MODELS.md: DenseNet-BC-100 (k = 12) at 32x32 is 287.9 M.
  func testMultiplyAccumulates() throws {
    let model = withoutRecording { DenseNet(try! .cifar(depth: 100, growthRate: 12, bottleneck: true)) }
    let macs = model.summary(inputShape: [1, 3, 32, 32]).reduce(0) { $0 + $1.multiplyAccumulates }
    XCTAssertEqual(Double(macs) / 1e6, 287.9, accuracy: 0.05)
  }
}
