@testable import Models
import Reprise
import TestSupport
import XCTest

/// Network slimming: the sparsity gradient, pruned architectures, and exactness of pruning
/// channels whose scale and shift are zero.
final class NetworkSlimmingTests: XCTestCase {
  /// A DenseNet of `layersPerBlock` layers per block, k = 3, 2-channel 8x8 images, 3 classes.
  func denseNet(bottleneck: Bool, layersPerBlock: Int = 2) throws -> DenseNet {
    RandomGenerator.global = RandomGenerator(seed: 42)
    return DenseNet(
      try .cifar(depth: 4 + (bottleneck ? 6 : 3) * layersPerBlock, growthRate: 3, bottleneck: bottleneck, classCount: 3, inputChannels: 2))
  }

  /// ResNet-20 with standard convolutions on 2-channel images, 3 classes.
  func resNet() -> ResNet {
    RandomGenerator.global = RandomGenerator(seed: 42)
    var configuration = ResNetConfiguration.resnet20(.standard)
    (configuration.classCount, configuration.inputChannels) = (3, 2)
    return ResNet(configuration)
  }

  /// Every batch normalisation of `network`.
  func norms(_ network: any Module) -> [BatchNorm2d] { network.namedModules.compactMap { $0.module as? BatchNorm2d } }

  /// Random scales (some negative), shifts and running statistics, so that pruning has something
  /// to choose and inference something to compute.
  func randomize(_ network: any Module, seed: UInt64) {
    var random = RandomGenerator(seed: seed)
    for norm in norms(network) {
      let c = norm.weight.shape
      norm.weight.value = Tensor(randomNormal: c, using: &random)
      norm.bias.value = Tensor(randomNormal: c, standardDeviation: 0.3, using: &random)
      norm.runningMean.value = Tensor(randomNormal: c, standardDeviation: 0.2, using: &random)
      norm.runningVariance.value = Tensor(randomUniform: c, lower: 0.5, upper: 1.5, using: &random)
    }
  }

  func testSparsityAddsTheSignOfEachScaleToItsGradientInsideCheckpointRegionsToo() throws {
    let strength = 0.01
    for plan in ["plain", "memory-efficient"] {
      let model = try denseNet(bottleneck: true)
      randomize(model, seed: 1)
      let first = norms(model)[0]
      first.weight.value = Tensor([0, -2, 3, 0.5, -0.25, 1] as [Float], shape: [6])  // sign(0) is 0
      var random = RandomGenerator(seed: 3)
      let x = Variable(Tensor(randomNormal: [4, 2, 8, 8], using: &random))
      try withCheckpointPlan(plan == "plain" ? .none : model.memoryEfficientPlan(), in: model) {
        crossEntropy(model(x), labels: [0, 1, 2, 1]).backward()
      }
      let before = model.namedParameters.map { ($0.name, $0.variable.grad!) }
      addChannelSparsityGradient(model, strength: strength)
      for ((name, grad), (_, variable)) in zip(before, model.namedParameters) {
        let isScale = name.hasSuffix("norm1.weight") || name.hasSuffix("norm2.weight") || name.hasSuffix("norm.weight") || name.hasSuffix("norm5.weight")
        let expected = isScale ? grad + sign(variable.value) * strength : grad
        assertBitIdentical(variable.grad, expected, "\(plan) \(name)")
      }
      XCTAssertEqual(first.weight.grad![0], before[1].1[0], "\(plan): sign(0) adds nothing")
    }
  }

  func testTrainStepWithSparsityEqualsTheStepOnTheAugmentedGradients() throws {
    var random = RandomGenerator(seed: 3)
    let images = Tensor(randomNormal: [4, 2, 8, 8], using: &random)
    func step(sparsity: Double, addingByHand: Bool) throws -> [Tensor] {
      let model = try denseNet(bottleneck: false)
      randomize(model, seed: 1)
      let optimizer = SGD(model.parameters, learningRate: 0.1, momentum: 0.9, weightDecay: 1e-4, nesterov: true)
      if addingByHand {
        optimizer.zeroGradients()
        crossEntropy(withLearningPhase(.training) { model(Variable(images)) }, labels: [0, 1, 2, 1]).backward()
        addChannelSparsityGradient(model, strength: sparsity)
        optimizer.step()
      } else {
        trainStep(model, optimizer: optimizer, images: images, labels: [0, 1, 2, 1], channelSparsity: sparsity)
      }
      return model.parameters.map(\.value)
    }
    let (withSparsity, byHand, without) = (try step(sparsity: 1e-3, addingByHand: false), try step(sparsity: 1e-3, addingByHand: true), try step(sparsity: 0, addingByHand: false))
    for (a, b) in zip(withSparsity, byHand) { assertBitIdentical(a, b) }
    XCTAssertNotEqual(withSparsity.map { $0.scalars(as: Double.self) }, without.map { $0.scalars(as: Double.self) })
  }

  func testPrunedDenseNetHasTheKeptChannelsAndItsCountedParameters() throws {
    for bottleneck in [false, true] {
      let model = try denseNet(bottleneck: bottleneck)
      randomize(model, seed: 5)
      let (pruned, report) = model.pruned(ratio: 0.4)
      let total = norms(model).reduce(0) { $0 + $1.weight.value.count }
      XCTAssertEqual(report.channels, total)
      XCTAssertEqual(report.removed, Int(0.4 * Double(total)))
      XCTAssertEqual(norms(pruned).reduce(0) { $0 + $1.weight.value.count }, total - report.removed)
      // Every kept |γ| is at least the threshold, every removed one at most.
      let kept = norms(pruned).flatMap { $0.weight.value.scalars(as: Double.self).map(\.magnitude) }
      XCTAssert(kept.allSatisfy { $0 >= report.threshold }, "bottleneck \(bottleneck)")
      XCTAssertEqual(pruned.parameterCount, Architecture.denseNet(pruned.configuration).parameterCount)
      XCTAssertLessThan(pruned.parameterCount, model.parameterCount)
      // The selections are the kept channels' positions in the features.
      let layer = pruned.stages.compactMap { $0.layer as? DenseBlock }[1].layers[1]
      XCTAssertEqual(layer.selection!.indices.indices, pruned.configuration.pruning!.layers[1][1])
      XCTAssertEqual(layer.conv1.weight.shape[1], layer.selection!.indices.count)
      XCTAssertEqual(pruned(Variable(Tensor(randomNormal: [2, 2, 8, 8]))).shape, [2, 3])
    }
  }

  func testArchitectureCountsParametersWithoutBuilding() throws {
    var architectures: [Architecture] = [
      .denseNet(try .cifar(depth: 40, growthRate: 12, bottleneck: false)), .denseNet(try .cifar(depth: 100, growthRate: 12, bottleneck: true)),
      .denseNet(.densenet121), .resNet(.resnet20(.standard)), .resNet(.resnet50(.standard)), .resNet(.seresnet56(.standard)),
    ]
    var pruned = ResNetConfiguration.resnet20(.standard)
    pruned.innerWidths = [3, 16, 9, 1, 32, 20, 64, 5, 33]
    architectures.append(.resNet(pruned))
    // The papers' and torchvision's counts (docs/models.md): DenseNet-40 1.02M, DenseNet-BC-100 0.8M, DenseNet-121 7,978,856, ResNet-20 0.27M.
    XCTAssertEqual(architectures[2].parameterCount, 7_978_856)
    for architecture in architectures {
      XCTAssertEqual(architecture.parameterCount, try architecture.makeNetwork().parameterCount, "\(architecture)")
    }
  }

  /// Zeroes γ and β of the `ratio` fraction of the prunable channels, prunes that fraction, and
  /// checks that the logits do not change, in inference and in training (batch statistics) under
  /// the plain and the memory-efficient plan.
  func assertPruningZeroChannelsChangesNoLogit(_ make: () throws -> any Network, prunable: (any Network) -> [BatchNorm2d], ratio: Double, _ name: String) throws {
    let model = try make()
    randomize(model, seed: 7)
    var random = RandomGenerator(seed: 8)
    let groups = prunable(model)
    var channels = groups.enumerated().flatMap { g, norm in (0..<norm.weight.value.count).map { (g, $0) } }
    channels.shuffle(using: &random)
    var zeroed = Dictionary(grouping: channels.prefix(Int(ratio * Double(channels.count))), by: \.0)
    for (g, norm) in groups.enumerated() where zeroed[g]?.count == norm.weight.value.count { zeroed[g]!.removeLast() }  // each layer keeps one
    for (g, norm) in groups.enumerated() {
      var scale = norm.weight.value.scalars(as: Float.self), shift = norm.bias.value.scalars(as: Float.self)
      for (_, c) in zeroed[g] ?? [] { (scale[c], shift[c]) = (0, 0) }
      norm.weight.value = Tensor(scale, shape: [scale.count])
      norm.bias.value = Tensor(shift, shape: [shift.count])
    }
    let removed = zeroed.values.reduce(0) { $0 + $1.count }
    let (pruned, report) =
      (model as? DenseNet).map { let p = $0.pruned(ratio: Double(removed) / Double(channels.count)); return (p.network as any Network, p.report) }
      ?? { let p = (model as! ResNet).pruned(ratio: Double(removed) / Double(channels.count)); return (p.network, p.report) }()
    XCTAssertEqual(report.removed, removed, name)
    XCTAssertEqual(report.threshold, 0, name)
    let x = Variable(Tensor(randomNormal: [4, 2, 8, 8], using: &random))
    let full = withoutRecording { withLearningPhase(.inference) { model(x).value } }
    assertClose(withoutRecording { withLearningPhase(.inference) { pruned(x).value } }, full, relativeTolerance: 1e-5, absoluteTolerance: 1e-5, "\(name) inference")
    for plan in ["plain", "memory-efficient"] {
      let trained = try withCheckpointPlan(plan == "plain" ? .none : model.memoryEfficientPlan(), in: model) { withLearningPhase(.training) { model(x).value } }
      let thin = try withCheckpointPlan(plan == "plain" ? .none : pruned.memoryEfficientPlan(), in: pruned) { withLearningPhase(.training) { pruned(x).value } }
      assertClose(thin, trained, relativeTolerance: 1e-5, absoluteTolerance: 1e-5, "\(name) training, \(plan)")
    }
  }

  func testPruningChannelsWhoseScaleAndShiftAreZeroChangesNoLogit() throws {
    for bottleneck in [false, true] {
      try assertPruningZeroChannelsChangesNoLogit({ try denseNet(bottleneck: bottleneck) }, prunable: norms, ratio: 0.4, "DenseNet bottleneck \(bottleneck)")
    }
    try assertPruningZeroChannelsChangesNoLogit(
      resNet, prunable: { network in network.namedModules.compactMap { $0.name.hasSuffix("conv1.bn") ? $0.module as? BatchNorm2d : nil } }, ratio: 0.5,
      "ResNet-20")
  }

  func testPrunedNetworksCheckpointedEqualPlainAndHaveCorrectGradients() throws {
    for bottleneck in [false, true] {
      let make = { () throws -> DenseNet in
        let model = try self.denseNet(bottleneck: bottleneck, layersPerBlock: 1)
        self.randomize(model, seed: 11)
        return model.pruned(ratio: 0.5).network
      }
      try assertPlansEqualPlain(imageShape: [2, 8, 8], "pruned DenseNet bottleneck \(bottleneck)", make)
      // The gradients through the selections: into the input, and into the selecting layers.
      let model = try make()
      model.convert(to: .float64)
      var random = RandomGenerator(seed: 1)
      let x = randomLeaf([2, 2, 4, 4], using: &random)
      let layer = model.stages.compactMap { $0.layer as? DenseBlock }[1].layers[0]
      try withCheckpointPlan(model.memoryEfficientPlan(), in: model) {
        assertGradientsCorrect(at: [x, layer.norm1.weight, layer.norm1.bias, layer.conv1.weight], "pruned, bottleneck \(bottleneck)") {
          crossEntropy(model(x), labels: [0, 2])
        }
      }
    }
    try assertPlansEqualPlain(imageShape: [2, 8, 8], "pruned ResNet-20") {
      let model = self.resNet()
      self.randomize(model, seed: 11)
      return model.pruned(ratio: 0.5).network
    }
  }

  func testPruningAgainComposesTheSelections() throws {
    let model = try denseNet(bottleneck: true)
    randomize(model, seed: 5)
    let once = model.pruned(ratio: 0.3).network
    let twice = once.pruned(ratio: 0.3).network
    let x = Variable(Tensor(randomNormal: [2, 2, 8, 8]))
    XCTAssertEqual(twice.parameterCount, Architecture.denseNet(twice.configuration).parameterCount)
    for (outer, inner) in zip(once.configuration.pruning!.layers.joined(), twice.configuration.pruning!.layers.joined()) {
      XCTAssert(Set(inner).isSubset(of: outer))
    }
    XCTAssertEqual(withoutRecording { withLearningPhase(.inference) { twice(x).shape } }, [2, 3])
  }

  func testStateFileArchitectureRoundTripsAndBadRecordsAreErrors() throws {
    let model = try denseNet(bottleneck: true)
    randomize(model, seed: 5)
    let architecture = Architecture.denseNet(model.pruned(ratio: 0.4).network.configuration)
    XCTAssertEqual(try Architecture(metadata: architecture.metadata, path: "f"), architecture)
    XCTAssertNil(try Architecture(metadata: [:], path: "f"))
    let text = architecture.metadata[Architecture.metadataKey]!
    for bad in [
      "{", "[]", #"{"family":"vgg","configuration":{}}"#, text.replacingOccurrences(of: #""growthRate":3"#, with: #""growthRate":-3"#),
      text.replacingOccurrences(of: #""growthRate":3"#, with: #""growthRate":99999999999999999999999"#),
      text.replacingOccurrences(of: #""final":["#, with: #""final":[100000,"#), text.replacingOccurrences(of: #""final":["#, with: #""final":[0,0,"#),
    ] {
      XCTAssertThrowsError(try Architecture(metadata: [Architecture.metadataKey: bad], path: "f"), bad) { error in
        XCTAssert("\(error)".hasPrefix("f is not a valid file"), "\(error)")
      }
    }
  }

  func testMutatedArchitectureRecordsAreReadOrRefusedAndWhatIsReadBuilds() throws {
    let model = try denseNet(bottleneck: true)
    randomize(model, seed: 5)
    let text = Architecture.denseNet(model.pruned(ratio: 0.4).network.configuration).metadata[Architecture.metadataKey]!
    let counts = fuzz(Array(text.utf8), cases: 300, seed: 12) { bytes in
      guard let architecture = try Architecture(metadata: [Architecture.metadataKey: String(decoding: bytes, as: UTF8.self)], path: "f") else { return }
      // A record that passes the checks builds, with the parameters it counts (small ones only: a
      // mutated digit can ask for a large network, which the tool refuses by the file's size).
      if architecture.parameterCount < 200_000 { XCTAssertEqual(try architecture.makeNetwork().parameterCount, architecture.parameterCount) }
    }
    XCTAssertGreaterThan(counts.rejected, 150, "\(counts)")
  }
}
