@testable import Models
import Reprise
import TestSupport
import XCTest

/// The SeqConv family on tiny configurations: the layer's windows against a direct construction,
/// gradients of every layer variant, memory-efficient equals plain, names and initialisation.
final class SeqResNetTests: XCTestCase {
  /// SeqResNet-B(k 4, r 1, N 1) on 2-channel 8x8 images: widths 16, 32, 48.
  func tiny(bottleneck: Bool = true) throws -> SeqResNet {
    RandomGenerator.global = RandomGenerator(seed: 42)
    return SeqResNet(try .cifar(granularity: 4, widening: 1, blocksPerStage: 1, bottleneck: bottleneck, classCount: 3, inputChannels: 2))
  }

  func testWindowsOfDenseAndWindowedLayers() {
    let dense = withoutRecording { SeqConv(inputChannels: 6, outputChannels: 6, granularity: 2, windowed: false, bottleneck: false) }
    XCTAssertEqual((0..<3).map(dense.window(ofFilter:)), [0..<6, 0..<8, 0..<10])
    let windowed = withoutRecording { SeqConv(inputChannels: 6, outputChannels: 8, granularity: 2, windowed: true, bottleneck: false) }
    XCTAssertEqual((0..<4).map(windowed.window(ofFilter:)), [0..<6, 2..<8, 4..<10, 6..<12])
  }

  /// The layer's raw and activated outputs equal those of the definition written out with explicit
  /// concatenations: filter i reads the last `inputChannels` (windowed) or all channels of
  /// concat(X, a_0, ..., a_(i-1)) and adds slice i of the shortcut before its BN.
  func testLayerEqualsDirectConstruction() {
    for (windowed, bottleneck) in [(true, false), (false, false), (true, true), (false, true)] {
      RandomGenerator.global = RandomGenerator(seed: 5)
      let (cin, cout, k) = (6, 8, 2)
      let layer = SeqConv(inputChannels: cin, outputChannels: cout, granularity: k, windowed: windowed, bottleneck: bottleneck)
      var random = RandomGenerator(seed: 6)
      let x = Variable(Tensor(randomNormal: [3, cin, 5, 4], using: &random))
      let shortcut = Variable(Tensor(randomNormal: [3, cout, 5, 4], using: &random))
      let (raw, activated) = withoutRecording { layer(x, shortcut: shortcut) }
      var channels = [x], raws: [Variable] = []
      withoutRecording {
        for (i, filter) in layer.filters.enumerated() {
          let all = concatenate(channels, alongAxis: 1), c = all.shape[1]
          let window = windowed ? slice(all, c - cin..<c, alongAxis: 1) : all
          let (r, a) = filter(window, dropping: nil, shortcut: slice(shortcut, i * k..<(i + 1) * k, alongAxis: 1))
          raws.append(r)
          channels.append(a)
        }
      }
      let context = "windowed \(windowed), bottleneck \(bottleneck)"
      assertClose(raw.value, concatenate(raws, alongAxis: 1).value, relativeTolerance: 1e-6, absoluteTolerance: 1e-6, context)
      assertClose(activated.value, concatenate(Array(channels.dropFirst()), alongAxis: 1).value, relativeTolerance: 1e-6,
        absoluteTolerance: 1e-6, context)
    }
  }

  /// Numerical gradients of the layer in every form: dense and windowed, plain and bottleneck,
  /// subgroups, with a shortcut, with window dropout, and as checkpoint regions.
  func testLayerGradientsInEveryVariant() {
    let variants: [(windowed: Bool, bottleneck: Bool, subgroups: Int, dropout: Double, checkpointed: Bool)] = [
      (false, false, 1, 0, false), (true, false, 1, 0, false), (false, true, 1, 0, false), (true, true, 1, 0, false),
      (true, true, 2, 0, false), (true, false, 1, 0.3, false), (true, true, 2, 0.3, true),
    ]
    for v in variants {
      RandomGenerator.global = RandomGenerator(seed: 11)
      let layer = SeqConv(
        inputChannels: 4, outputChannels: 6, granularity: 2, windowed: v.windowed, bottleneck: v.bottleneck, subgroups: v.subgroups,
        windowDropRate: v.dropout)
      layer.convert(to: .float64)
      var random = RandomGenerator(seed: 12)
      let x = randomLeaf([2, 4, 3, 3], using: &random), shortcut = randomLeaf([2, 6, 3, 3], using: &random)
      let plan: CheckpointPlan = v.checkpointed ? .units(of: layer) { _ in .nothing } : .none
      try! withCheckpointPlan(plan, in: layer) {
        assertGradientsCorrect(at: [x, shortcut] + layer.parameters, "\(v)") {
          RandomGenerator.global = RandomGenerator(seed: 13)  // the same dropout masks in every evaluation
          let (raw, activated) = layer(x, shortcut: shortcut)
          return raw * activated
        }
      }
    }
  }

  /// Every plan gives SeqResNet-B's gradients and running statistics without checkpointing, bit for
  /// bit, with window and blender dropout inside the replayed regions; also with whole blocks and
  /// layers as regions around the filters' regions (nested).
  func testPlansEqualPlain() throws {
    let model = try tiny()
    let nested = CheckpointPlan.units(of: model) { $0.module is SeqResidualBlock || $0.module is SeqFilter ? .nothing : nil }
    try assertPlansEqualPlain(imageShape: [2, 8, 8], extra: [("blocks around filters", nested)]) { try tiny() }
  }

  func testModelGradients() throws {
    for bottleneck in [false, true] {
      let model = withoutRecording {
        SeqResNet(try! .cifar(granularity: 2, widening: 1, blocksPerStage: 1, bottleneck: bottleneck, dropRate: 0, classCount: 3, inputChannels: 1))
      }
      model.convert(to: .float64)
      var random = RandomGenerator(seed: 3)
      let x = randomLeaf([2, 1, 4, 4], using: &random)
      // Every element of 20,000 parameters would take hours in a debug build: the input and a
      // few small tensors from each kind of unit, whose gradients pass through the whole network.
      let junction = bottleneck ? "norm2" : "norm"  // the BN after each filter's junction
      let names = [
        "stage1.head.filter2.\(junction).bias", "stage2.extension.filter1.\(junction).weight", "stage2.shrink.norm.weight",
        "stage3.block1.layer2.filter3.\(junction).bias", "classifier.bias",
        bottleneck ? "stage3.block1.layer2.filter3.conv2.weight" : "stage2.extension.filter1.norm.bias",
      ]
      let checked = model.namedParameters.filter { names.contains($0.name) }
      XCTAssertEqual(checked.count, names.count)
      assertGradientsCorrect(at: [x] + checked.map(\.variable), "bottleneck \(bottleneck)") {
        RandomGenerator.global = RandomGenerator(seed: 4)
        return crossEntropy(model(x), labels: [0, 2])
      }
    }
  }

  func testNamesAndInitialisation() throws {
    let model = try tiny()
    XCTAssertEqual(model(Variable(Tensor(randomNormal: [2, 2, 8, 8]))).shape, [2, 3])
    let parameters = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.name, $0.variable.value) })
    for name in [
      "stem.conv.weight", "stage1.head.filter4.conv1.weight", "stage1.block1.layer1.filter1.norm2.bias",
      "stage2.extension.filter4.conv2.weight", "stage2.shrink.conv.weight", "stage3.block1.layer2.filter12.conv2.weight",
      "blender.norm.weight", "classifier.bias",
    ] { XCTAssertNotNil(parameters[name], name) }
    XCTAssertEqual(parameters["stage2.shrink.conv.weight"]?.shape, [32, 4, 3, 3], "groups = width / k")
    XCTAssertEqual(parameters["stage1.head.filter4.conv1.weight"]?.shape, [4, 28, 1, 1], "dense window 16 + 3k")
    XCTAssertEqual(parameters["stage2.extension.filter4.conv1.weight"]?.shape, [4, 16, 1, 1], "window of the input width")
    XCTAssertTrue(model.namedBuffers.map(\.name).contains("stage3.shrink.norm.running_mean"))
    // Zero init: the 3x3 of every filter of each block's second layer, not its 1x1 nor the first layer.
    XCTAssertEqual(parameters["stage3.block1.layer2.filter12.conv2.weight"]?.scalars(as: Float.self).allSatisfy { $0 == 0 }, true)
    XCTAssertEqual(parameters["stage3.block1.layer2.filter12.conv1.weight"]?.scalars(as: Float.self).contains { $0 != 0 }, true)
    XCTAssertEqual(parameters["stage3.block1.layer1.filter12.conv2.weight"]?.scalars(as: Float.self).contains { $0 != 0 }, true)
    // Uniform(±sqrt(6 / fan-out)) convolutions, Uniform(±sqrt(3 / classes)) classifier.
    let bound = (6.0 / (4 * 9)).squareRoot(), values = parameters["stage2.extension.filter4.conv2.weight"]!.scalars(as: Double.self)
    XCTAssertTrue(values.allSatisfy { abs($0) <= bound } && values.contains { abs($0) > bound / 2 })
    XCTAssertTrue(parameters["classifier.weight"]!.scalars(as: Double.self).allSatisfy { abs($0) <= 1.0 })
  }

  func testInvalidConfigurationThrows() {
    XCTAssertThrowsError(try SeqResNetConfiguration.cifar(granularity: 12, widening: 1, blocksPerStage: 1, bottleneck: false)) { error in
      XCTAssertEqual("\(error)", "granularity 12 does not divide the stage width unit 16r = 16")
    }
  }
}

/// Exact parameter counts (docs/models.md) and multiply-accumulates of SeqResNet-B22.
final class SeqResNetCountTests: XCTestCase {
  func count(_ c: SeqResNetConfiguration) -> Int { withoutRecording { SeqResNet(c).parameterCount } }

  func testCIFARCounts() throws {
    XCTAssertEqual(count(try .cifar(granularity: 8, widening: 4, blocksPerStage: 1, bottleneck: false)), 1_233_370)
    XCTAssertEqual(count(try .cifar(granularity: 16, widening: 10, blocksPerStage: 1, bottleneck: false)), 7_627_354)
    XCTAssertEqual(count(try .cifar(granularity: 16, widening: 7, blocksPerStage: 1, bottleneck: true)), 843_834)
    XCTAssertEqual(count(try .cifar(granularity: 32, widening: 12, blocksPerStage: 3, bottleneck: true)), 6_029_658)
  }

  func testImageNetCounts() {
    XCTAssertEqual(count(.b22), 11_859_656)
    XCTAssertEqual(count(.b42), 25_642_696)
    XCTAssertEqual(count(.resnext24), 26_211_784)
  }

  /// 2.883 G multiply-accumulates for SeqResNet-B22 at 224x224 (within 0.5%).
  func testMultiplyAccumulatesOfB22() {
    let model = withoutRecording { SeqResNet(.b22) }
    let macs = model.summary(inputShape: [1, 3, 224, 224]).reduce(0) { $0 + $1.multiplyAccumulates }
    XCTAssertEqual(Double(macs) / 1e9, 2.883, accuracy: 2.883 * 0.005)
  }
}
