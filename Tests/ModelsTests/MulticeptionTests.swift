@testable import Models
import Reprise
import TestSupport
import XCTest

/// The Multiception family: gradients of every convolution variant, shake-shake weights, stochastic
/// depth, memory-efficient equals plain, and the official code's exact counts (docs/models.md).
final class MulticeptionTests: XCTestCase {
  /// Every variant with strides 1 and 2 and every kernel list, on tiny shapes in Float64.
  func testGradientsOfEveryVariant() {
    for variant in ConvolutionVariant.allCases {
      for stride in [1, 2] {
        for kernels in variant == .multiception ? [[3, 5, 7], [3, 5], [3, 3]] : [[3]] {
          RandomGenerator.global = RandomGenerator(seed: 21)
          let layer = variant.make(inputChannels: 3, outputChannels: 4, stride: stride, kernels: kernels, fan: .fanIn)
          layer.convert(to: .float64)
          var random = RandomGenerator(seed: 22)
          let x = randomLeaf([2, 3, 7, 6], using: &random)
          assertGradientsCorrect(at: [x] + layer.parameters, "\(variant) stride \(stride) kernels \(kernels)") { layer(x) }
        }
      }
    }
  }

  /// `layer(x, applyingReLU: true)` (the ReLU inside the last batch normalisation's pass, for the
  /// variants that end in one) gives `relu(layer(x))`'s output and gradients, bit for bit in
  /// Float32, in training and inference.
  func testFusedReLUEqualsReLUOfEveryVariant() {
    for variant in ConvolutionVariant.allCases {
      for phase in [LearningPhase.training, .inference] {
        RandomGenerator.global = RandomGenerator(seed: 24)
        let layer = variant.make(inputChannels: 6, outputChannels: 8, stride: 1, kernels: [3, 5], fan: .fanIn)
        var random = RandomGenerator(seed: 25)
        let x = Variable(Tensor(randomNormal: [2, 6, 9, 8], using: &random), requiresGrad: true)
        let seed = Tensor(randomNormal: [2, 8, 9, 8], using: &random)
        let run = { (body: () -> Variable) in Self.outputAndGradients([x] + layer.parameters, phase, seed: seed, body) }
        let separate = run { relu(layer(x)) }, fused = run { layer(x, applyingReLU: true) }
        XCTAssertEqual(fused, separate, "\(variant) \(phase)")
        XCTAssertTrue(separate[0].contains(0) && separate[0].contains { $0 > 0 }, "the ReLU cuts: \(variant)")
      }
    }
  }

  /// `layer(x, followedByReLUAnd: conv)` (for the variants that end in a batch normalisation, one
  /// pre-activation unit of that normalisation, the ReLU and `conv`, as the residual block runs its
  /// second convolution) gives `conv(layer(x, applyingReLU: true))`'s output, gradients and running
  /// statistics, bit for bit in Float32, in training and inference. 8 channels on 9x8 planes: the
  /// second convolution takes Winograd's path, which normalises its input as it transforms it.
  func testReLUAndConvolutionAfterEveryVariantEqualTheirComposition() {
    for variant in ConvolutionVariant.allCases {
      for phase in [LearningPhase.training, .inference] {
        var results: [[[Float]]] = []
        for fused in [false, true] {
          RandomGenerator.global = RandomGenerator(seed: 27)
          let layer = variant.make(inputChannels: 6, outputChannels: 8, stride: 1, kernels: [3, 5], fan: .fanIn)
          let next = Conv2d(inputChannels: 8, outputChannels: 8, kernelSize: 3, padding: 1, bias: false)
          var random = RandomGenerator(seed: 28)
          let x = Variable(Tensor(randomNormal: [2, 6, 9, 8], using: &random), requiresGrad: true)
          let seed = Tensor(randomNormal: [2, 8, 9, 8], using: &random)
          let leaves = [x] + layer.parameters + next.parameters
          let gradients = Self.outputAndGradients(leaves, phase, seed: seed) {
            fused ? layer(x, followedByReLUAnd: next) : next(layer(x, applyingReLU: true))
          }
          results.append(gradients + layer.namedBuffers.map { $0.variable.value.scalars(as: Float.self) })
        }
        XCTAssertEqual(results[1], results[0], "\(variant) \(phase)")
      }
    }
  }

  /// MobileNetV2's conv, BN and ReLU6 (the ReLU6 in the BN's pass) give `relu6(bn(conv(x)))`'s
  /// output and gradients, bit for bit in Float32, in training and inference, with values cut at
  /// both ends of the ReLU6.
  func testConvBNReLU6EqualsItsLayersInTurn() {
    for phase in [LearningPhase.training, .inference] {
      RandomGenerator.global = RandomGenerator(seed: 26)
      let layer = ConvBNReLU6(6, 8, kernel: 3, stride: 1)
      // Wide normalised values, so that some pass 6.
      layer.norm.weight.value = Tensor([4, 5, 6, 7, 4, 5, 6, 7] as [Float], shape: [8])
      layer.norm.runningVariance.value = Tensor(repeating: 0.05, shape: [8])
      var random = RandomGenerator(seed: 27)
      let x = Variable(Tensor(randomNormal: [2, 6, 9, 8], using: &random), requiresGrad: true)
      let seed = Tensor(randomNormal: [2, 8, 9, 8], using: &random)
      let run = { (body: () -> Variable) in Self.outputAndGradients([x] + layer.parameters, phase, seed: seed, body) }
      let separate = run { relu6(layer.norm(layer.conv(x))) }, fused = run { layer(x) }
      XCTAssertEqual(fused, separate, "\(phase)")
      XCTAssertTrue(separate[0].contains(0) && separate[0].contains(6) && separate[0].contains { $0 > 0 && $0 < 6 }, "cut at both ends, \(phase)")
    }
  }

  /// The output of `body` in `phase` and the gradients it sends `leaves` from `seed`, as Float32
  /// scalars, the leaves' gradients cleared first.
  static func outputAndGradients(_ leaves: [Variable], _ phase: LearningPhase, seed: Tensor, _ body: () -> Variable) -> [[Float]] {
    for leaf in leaves { leaf.grad = nil }
    let y = withLearningPhase(phase) { body() }
    y.backward(seed: seed)
    return [y.value.scalars(as: Float.self)] + leaves.map { $0.grad!.scalars(as: Float.self) }
  }

  /// The concatenated depthwise branches equal separate depthwise convolutions concatenated.
  func testMulticeptionBranchesEqualSeparateConvolutions() {
    var random = RandomGenerator(seed: 23)
    let x = Tensor(randomNormal: [2, 3, 9, 8], using: &random)
    let weights = [3, 5, 7, 3].map { Tensor(randomNormal: [3, 1, $0, $0], using: &random) }
    let fused = concatenatedConv2d(x, weights, paddings: [1, 2, 3, 1], groups: 3)
    let separate = concatenate(zip(weights, [1, 2, 3, 1]).map { conv2d(x, $0, padding: .init($1), groups: 3) }, alongAxis: 1)
    assertBitIdentical(fused.contiguous(), separate.contiguous())
  }

  func testShakeShakeWeights() {
    let a = Variable(Tensor([1, 2, 3, 4] as [Double], shape: [2, 2, 1, 1]), requiresGrad: true)
    let b = Variable(Tensor([10, 20, 30, 40] as [Double], shape: [2, 2, 1, 1]), requiresGrad: true)
    let alpha = Tensor([0.25, 0.5] as [Double], shape: [2, 1, 1, 1]), beta = Tensor([0.9, 0.1] as [Double], shape: [2, 1, 1, 1])
    let y = shakeShake(a, b, alpha: alpha, beta: beta)
    XCTAssertEqual(y.value.scalars(as: Double.self), [0.25 + 7.5, 0.5 + 15, 1.5 + 15, 2 + 20])
    y.backward(seed: Tensor(ones: [2, 2, 1, 1], dtype: .float64))
    XCTAssertEqual(a.grad!.scalars(as: Double.self), [0.9, 0.9, 0.1, 0.1], "β weights the first branch's gradient")
    XCTAssertEqual(b.grad!.scalars(as: Double.self).map { ($0 * 1e12).rounded() / 1e12 }, [0.1, 0.1, 0.9, 0.9])
  }

  /// The mix's pullback reads neither branch, so a region that ends with it computes neither the
  /// mix nor the branches' convolutions in its replay (optimisation A); the gradients are those of
  /// the unchecked graph.
  func testShakeShakeReplaySkipsTheMixNothingReads() {
    var random = RandomGenerator(seed: 26)
    let x = randomLeaf([2, 3, 5, 5], using: &random)
    let w1 = randomLeaf([4, 3, 3, 3], using: &random), w2 = randomLeaf([4, 3, 3, 3], using: &random)
    let alpha = Tensor(randomUniform: [2, 1, 1, 1], dtype: .float64, using: &random)
    let beta = Tensor(randomUniform: [2, 1, 1, 1], dtype: .float64, using: &random)
    let body: (Variable) -> Variable = { v in shakeShake(conv2d(v, w1, padding: 1), conv2d(v, w2, padding: 1), alpha: alpha, beta: beta) }
    let seed = Tensor(randomNormal: [2, 4, 5, 5], dtype: .float64, using: &random)
    body(x).backward(seed: seed)
    let plain = [x, w1, w2].map(\.grad!)
    for leaf in [x, w1, w2] { leaf.grad = nil }
    let y = checkpoint(x, name: "shake", body)
    let backwardMACs = countingMultiplyAccumulates { y.backward(seed: seed) }.multiplyAccumulates
    XCTAssertEqual(backwardMACs, 0, "the replay computed the mix and the convolutions only it reads")
    for (p, c) in zip(plain, [x, w1, w2].map(\.grad!)) { assertBitIdentical(p, c) }
  }

  /// Branches of different shapes stop with a message that names both.
  func testShakeShakeRejectsBranchesOfDifferentShapes() {
    let a = Variable(Tensor(zeros: [2, 2, 1, 1], dtype: .float64)), b = Variable(Tensor(zeros: [2, 3, 1, 1], dtype: .float64))
    let alpha = Tensor(zeros: [2, 1, 1, 1], dtype: .float64)
    assertStops(withMessageContaining: ["shakeShake: the branches are [2, 2, 1, 1] (float64) and [2, 3, 1, 1] (float64)"], in: self) {
      _ = shakeShake(a, b, alpha: alpha, beta: alpha)
    }
  }

  /// In training the two branches mix with a fresh α per image; at inference they are averaged.
  func testShakeUnitMixesPerImageInTrainingAndAveragesAtInference() {
    RandomGenerator.global = RandomGenerator(seed: 24)
    let unit = ShakeUnit(inputChannels: 4, outputChannels: 4, stride: 1, convolution: .multiception, kernels: [3, 5])
    var random = RandomGenerator(seed: 25)
    let x = Variable(Tensor(randomNormal: [3, 4, 5, 5], using: &random))
    let (a, b) = withLearningPhase(.inference) { (unit.branches[0](x), unit.branches[1](x)) }
    let averaged = withLearningPhase(.inference) { unit(x) }
    assertClose(averaged.value, ((a + b) * 0.5 + x).value, relativeTolerance: 1e-6, absoluteTolerance: 1e-6)
    let trained = unit(x)
    XCTAssertFalse(trained.value.scalars(as: Float.self) == averaged.value.scalars(as: Float.self))
  }

  /// A unit takes the ReLU its branches and projecting shortcut start with once: its output is
  /// theirs, each with its own ReLU, bit for bit, and its input gradient theirs up to the order in
  /// which the gradients are added.
  func testShakeUnitSharesItsBranchesReLU() {
    for (inputs, stride) in [(4, 1), (3, 2)] {
      let unit = ShakeUnit(inputChannels: inputs, outputChannels: 4, stride: stride, convolution: .standard, kernels: [3, 5])
      var random = RandomGenerator(seed: 28)
      let x = Variable(Tensor(randomNormal: [3, inputs, 6, 6], dtype: .float64, using: &random), requiresGrad: true)
      unit.convert(to: .float64)
      var results: [(Tensor, Tensor)] = []
      for shared in [true, false] {
        RandomGenerator.global = RandomGenerator(seed: 29)
        x.grad = nil
        let y: Variable
        if shared {
          y = unit(x)
        } else {
          let a = unit.branches[0](x), b = unit.branches[1](x)
          let alpha = Tensor(randomUniform: [3, 1, 1, 1], dtype: .float64), beta = Tensor(randomUniform: [3, 1, 1, 1], dtype: .float64)
          y = shakeShake(a, b, alpha: alpha, beta: beta) + (unit.shortcut?(x) ?? x)
        }
        sum(y * y).backward()
        results.append((y.value, x.grad!))
      }
      assertBitIdentical(results[0].0, results[1].0, "stride \(stride): output")
      assertClose(results[0].1, results[1].1, relativeTolerance: 1e-12, absoluteTolerance: 1e-12, "stride \(stride): input gradient")
    }
  }

  /// A block that never survives returns ReLU of its shortcut in training; at inference its branch
  /// is scaled by the survival probability.
  func testStochasticDepth() {
    RandomGenerator.global = RandomGenerator(seed: 26)
    let configuration = ResNetConfiguration(blocksPerStage: 1, convolution: .multiception)
    let dropped = BasicBlock(inputChannels: 4, innerChannels: 4, outputChannels: 4, stride: 1, configuration: configuration, kernels: [3, 5], survival: 1e-12)
    var random = RandomGenerator(seed: 27)
    let x = Variable(Tensor(randomNormal: [2, 4, 5, 5], using: &random))
    assertBitIdentical(dropped(x).value, relu(x).value)
    let block = BasicBlock(inputChannels: 4, innerChannels: 4, outputChannels: 4, stride: 1, configuration: configuration, kernels: [3, 5], survival: 0.25)
    withLearningPhase(.inference) {
      let h = block.bn2(block.conv2(relu(block.first(x))))
      assertClose(block(x).value, relu(h * 0.25 + x).value, relativeTolerance: 1e-6, absoluteTolerance: 1e-6)
    }
  }

  /// ShakeNet's memory-efficient plan makes a region of every unit but the last stage's, and a
  /// training step under it peaks within 2% of every unit a region: the peak falls in the first
  /// stage's backward pass, after the last stage's tapes are freed.
  func testShakeNetPlanLeavesTheLastStageOut() throws {
    RandomGenerator.global = RandomGenerator(seed: 28)
    let model = ShakeNet(convolution: .standard, unitsPerStage: 2, widths: [16, 32, 64])
    let plan = model.memoryEfficientPlan()
    XCTAssertEqual(plan.regions.map(\.first), ["layer1.0", "layer1.1", "layer2.0", "layer2.1"])
    XCTAssertEqual(Set(plan.regions.map(\.policy)), [.nothing])
    var random = RandomGenerator(seed: 29)
    let x = Variable(Tensor(randomNormal: [4, 3, 32, 32], using: &random))
    // One thread: two threads' peaks have moved between runs by a few percent
    // (docs/performance.md#shakenet-plan), more than the margin this test allows.
    let threads = Parallel.threadCount
    Parallel.setThreadCount(1)
    defer { Parallel.setThreadCount(threads) }
    func peak(_ plan: CheckpointPlan) throws -> Int {
      defer { for p in model.parameters { p.grad = nil } }  // so that no step counts another's gradients
      return try peakBytes { try withCheckpointPlan(plan, in: model) { withLearningPhase(.training) { mean(model(x)).backward() } } }
    }
    _ = try peak(.none)  // a first step, which makes what every step reuses
    let planned = try peak(plan)
    let everyUnit = try peak(.units(of: model) { $0.module is ShakeUnit ? .nothing : nil })
    // Leaving out the first stage instead raises the peak by a quarter. (This small network's
    // parameters are few, so its plan costs 1.3% more than every unit; ShakeNet-26-2x96d's, under 0.01%.)
    XCTAssertLessThanOrEqual(Double(planned), Double(everyUnit) * 1.02, "within 2% of every unit's peak")
    XCTAssertLessThan(Double(planned), Double(try peak(.none)) * 0.75)
  }

  /// Every plan gives the gradients and running statistics of no plan, bit for bit, with
  /// shake-shake draws and stochastic depth inside the replayed regions.
  func testPlansEqualPlain() throws {
    let models: [(String, () -> any Network)] = [
      ("ShakeNet", { ShakeNet(convolution: .multiception, unitsPerStage: 1, widths: [4, 8, 12], classCount: 3, inputChannels: 2) }),
      // 96 channels on 8 x 8: the first stage's 96 -> 96 convolutions (one per branch) take Winograd.
      ("ShakeNet standard, Winograd", { ShakeNet(convolution: .standard, unitsPerStage: 1, widths: [96, 8, 8], classCount: 3, inputChannels: 2) }),
      ("Multiception ResNet", {
        ResNet(ResNetConfiguration(blocksPerStage: 2, convolution: .multiception, finalSurvival: 0.5, classCount: 3, inputChannels: 2))
      }),
      ("MobileNetV2", { MobileNetV2(convolution: .dsconv, classCount: 3, inputChannels: 2) }),
      // Squeeze-and-excitation blocks, whose normalisation, excitation, sum and ReLU run fused.
      ("SE-ResNet", {
        ResNet(ResNetConfiguration(blocksPerStage: 1, convolution: .standard, squeezeReduction: 4, finalSurvival: 0.5, classCount: 3, inputChannels: 2))
      }),
    ]
    for (name, make) in models { try assertPlansEqualPlain(imageShape: [2, 8, 8], name, make) }
  }

  func testNames() {
    let model = withoutRecording { ResNet(.seresnet56(.multiception)) }
    let names = Set(model.namedParameters.map(\.name))
    for name in [
      "stem.conv.weight", "layer1.0.conv1.depthwise.2.weight", "layer1.0.conv1.pointwise.bias", "layer2.0.shortcut.0.weight",
      "layer3.8.se.fc.0.weight", "fc.bias",
    ] { XCTAssertTrue(names.contains(name), name) }
    XCTAssertEqual(model.namedParameters.first { $0.name == "layer3.0.conv1.depthwise.1.weight" }?.variable.shape, [32, 1, 3, 3])
    let shake = withoutRecording { ShakeNet(convolution: .multiception, unitsPerStage: 1, widths: [4, 8, 12]) }
    let shakeNames = Set(shake.namedParameters.map(\.name))
    for name in ["c_in.weight", "c_in.bias", "layer1.0.branch1.1.bn2.weight", "layer2.0.shortcut.conv1.weight", "fc_out.bias"] {
      XCTAssertTrue(shakeNames.contains(name), name)
    }
    let mobile = withoutRecording { MobileNetV2(convolution: .multiception) }
    XCTAssertTrue(mobile.namedBuffers.map(\.name).contains("features.2.conv.1.bn1.running_mean"))
    XCTAssertTrue(mobile.namedParameters.map(\.name).contains("classifier.1.weight"))
  }
}

/// The official code's exact counts (, CIFAR-10 unless noted).
final class MulticeptionCountTests: XCTestCase {
  func count(_ make: @autoclosure () -> any Network) -> Int { withoutRecording { make().parameterCount } }

  func testResNetCounts() {
    let expected: [(ConvolutionVariant, [Int])] = [
      (.standard, [272_474, 758_554, 867_866]), (.dsconv, [166_858, 443_498, 510_922]), (.multiception, [189_434, 509_434, 585_530]),
      (.mixconv, [269_848, 752_188, 860_752]),
    ]
    for (variant, counts) in expected {
      XCTAssertEqual(count(ResNet(.resnet20(variant))), counts[0], "ResNet-20 \(variant)")
      XCTAssertEqual(count(ResNet(.resnet50(variant))), counts[1], "ResNet-50 \(variant)")
      XCTAssertEqual(count(ResNet(.seresnet56(variant))), counts[2], "SE-ResNet-56 \(variant)")
    }
    var c100 = ResNetConfiguration.resnet50(.multiception)
    c100.classCount = 100
    XCTAssertEqual(count(ResNet(c100)), 515_284)
    var imagenet32 = ResNetConfiguration.resnet50(.standard)
    imagenet32.classCount = 1000
    XCTAssertEqual(count(ResNet(imagenet32)), 822_904)
  }

  func testShakeNetAndMobileNetCounts() {
    XCTAssertEqual(count(ShakeNet(convolution: .standard)), 26_192_906)
    XCTAssertEqual(count(ShakeNet(convolution: .dsconv)), 15_451_178)
    XCTAssertEqual(count(ShakeNet(convolution: .multiception)), 16_980_714)
    XCTAssertEqual(count(ShakeNet(convolution: .mixconv)), 26_480_650)
    XCTAssertEqual(count(ShakeNet(convolution: .multiception, classCount: 100)), 17_015_364)
    XCTAssertEqual(count(MobileNetV2(convolution: .multiception)), 2_252_634)
    XCTAssertEqual(count(MobileNetV2(convolution: .dsconv)), 2_236_330)
    XCTAssertEqual(count(MobileNetV2(convolution: .multiception, classCount: 100)), 2_367_924)
  }
}
