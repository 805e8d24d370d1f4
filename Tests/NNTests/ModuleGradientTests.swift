import Reprise
import TestSupport
import XCTest

/// Every module checked numerically in Float64 on tiny shapes, in training and inference.
final class ModuleGradientTests: XCTestCase {
  var random = RandomGenerator(seed: 31)

  override func setUp() { RandomGenerator.global = RandomGenerator(seed: 5) }

  /// Checks the gradients of `layer` with respect to its input and all its parameters.
  func check(_ layer: any Layer, input shape: [Int], _ context: String, file: StaticString = #filePath, line: UInt = #line) {
    layer.convert(to: .float64)
    let x = randomLeaf(shape, using: &random)
    assertGradientsCorrect(at: [x] + layer.parameters, context, file: file, line: line) { layer(x) }
  }

  func testConvolutionAndLinear() {
    check(Conv2d(inputChannels: 3, outputChannels: 4, kernelSize: 3, stride: 2, padding: 1), input: [2, 3, 5, 5], "conv with bias")
    check(Conv2d(inputChannels: 4, outputChannels: 4, kernelSize: [3, 1], padding: [1, 0], groups: 2, bias: false), input: [2, 4, 4, 3], "grouped conv")
    check(Linear(inputFeatures: 5, outputFeatures: 3), input: [4, 5], "linear")
  }

  func testBatchNormInBothPhases() {
    check(BatchNorm2d(channels: 3), input: [4, 3, 2, 3], "batch norm, training")
    let fused = BatchNorm2d(channels: 3)
    fused.convert(to: .float64)
    let x = randomLeaf([4, 3, 2, 3], using: &random)
    assertGradientsCorrect(at: [x] + fused.parameters, "batch norm + ReLU, training") { fused(x, applyingReLU: true) }
    assertGradientsCorrect(at: [x] + fused.parameters, "batch norm + ReLU capped at 0.8, training") {
      fused(x, applyingReLU: true, ceiling: 0.8, statistics: nil)
    }
    let bn = BatchNorm2d(channels: 3)
    bn.convert(to: .float64)
    bn.runningMean.value = Tensor([0.5, -1, 2], shape: [3])
    bn.runningVariance.value = Tensor([0.5, 2, 1.5], shape: [3])
    withLearningPhase(.inference) {
      assertGradientsCorrect(at: [x] + bn.parameters, "batch norm, inference") { bn(x) }
      assertGradientsCorrect(at: [x] + bn.parameters, "batch norm + ReLU, inference") { bn(x, applyingReLU: true) }
      assertGradientsCorrect(at: [x] + bn.parameters, "batch norm + ReLU capped at 0.8, inference") {
        bn(x, applyingReLU: true, ceiling: 0.8, statistics: nil)
      }
    }
  }

  func testParameterlessLayers() {
    check(ReLU(), input: [3, 4], "relu")
    check(ReLU6(), input: [3, 4], "relu6")
    check(Sigmoid(), input: [3, 4], "sigmoid")
    check(Flatten(), input: [2, 3, 2, 2], "flatten")
    check(Identity(), input: [2, 3], "identity")
    check(MaxPool2d(kernelSize: 3, stride: 2, padding: 1), input: [1, 2, 5, 5], "max pool")
    check(AvgPool2d(kernelSize: 2), input: [1, 2, 4, 6], "avg pool")
    check(GlobalAvgPool2d(), input: [2, 3, 3, 2], "global avg pool")
    check(Dropout(probability: 0.3), input: [4, 5], "dropout")
    check(Dropout2d(probability: 0.5), input: [2, 4, 2, 2], "channel dropout")
  }

  func testSequentialAndItsSegments() throws {
    let body = Sequential([
      Conv2d(inputChannels: 2, outputChannels: 3, kernelSize: 3, padding: 1), BatchNorm2d(channels: 3), ReLU(),
      Conv2d(inputChannels: 3, outputChannels: 2, kernelSize: 1), GlobalAvgPool2d(), Linear(inputFeatures: 2, outputFeatures: 2),
    ])
    check(body, input: [3, 2, 4, 4], "sequential")
    try withCheckpointPlan(.segments(3, of: body), in: body) { check(body, input: [3, 2, 4, 4], "sequential in segments") }
    XCTAssertEqual(body.namedParameters.map(\.name).prefix(4), ["0.weight", "0.bias", "1.weight", "1.bias"])
  }

  func testCrossEntropyWithAndWithoutSmoothing() {
    let logits = randomLeaf([4, 5], using: &random)
    assertGradientsCorrect(at: [logits], "cross-entropy") { crossEntropy(logits, labels: [0, 4, 2, 2]) }
    assertGradientsCorrect(at: [logits], "smoothed") { crossEntropy(logits, labels: [1, 3, 0, 2], labelSmoothing: 0.1) }
    // Against the definition: -mean(log softmax at the label).
    let z = Tensor([1, 2, 3, 0, 0, 0] as [Double], shape: [2, 3])
    let expected = -((logSoftmax(z, alongAxis: 1)[0, 2] + logSoftmax(z, alongAxis: 1)[1, 0]) / 2)
    XCTAssertEqual(crossEntropy(Variable(z), labels: [2, 0]).value.scalar, expected, accuracy: 1e-12)
    let smoothed = -(0.9 * logSoftmax(z, alongAxis: 1)[0, 2] + 0.1 / 3 * sum(logSoftmax(z, alongAxis: 1), alongAxes: [1])[0])
    XCTAssertEqual(crossEntropy(Variable(slice(z, 0..<1, alongAxis: 0)), labels: [2], labelSmoothing: 0.1).value.scalar, smoothed, accuracy: 1e-12)
    XCTAssertEqual(accuracy(z, labels: [2, 1]), 0.5)
  }

  /// The growing feature buffer is a differentiable concatenation, and its windows are
  /// differentiable views, also when the first maps are cut into pieces.
  func testFeatureBufferGradients() {
    let a = randomLeaf([2, 2, 3, 3], using: &random), b = randomLeaf([2, 1, 3, 3], using: &random)
    assertGradientsCorrect(at: [a, b], "feature buffer") {
      let buffer = FeatureBuffer(capacity: 5, first: a)
      buffer.append(b * 2)
      buffer.append(exp(slice(buffer.features, 1..<3, alongAxis: 1)))
      return buffer.features * buffer.features
    }
    let c = randomLeaf([2, 4, 3, 3], using: &random)
    assertGradientsCorrect(at: [c, b], "windows over pieces") {
      let buffer = FeatureBuffer(capacity: 7, first: c, pieceSize: 2)
      buffer.append(b * 3)
      let w = buffer.window(2..<5)  // the second piece of the first maps and the appended channel
      buffer.append(sigmoid(slice(w, 1..<3, alongAxis: 1) * slice(w, 0..<2, alongAxis: 1)))
      return buffer.window(4..<7) * sum(buffer.window(0..<4), alongAxes: [1], keepingDimensions: true) + sum(buffer.features, alongAxes: [1, 2, 3], keepingDimensions: true)
    }
  }

  func testFeatureBufferWindowsMatchTheirChannels() {
    let c = Variable(Tensor(randomNormal: [2, 4, 3, 3], using: &random))
    let buffer = FeatureBuffer(capacity: 6, first: c, pieceSize: 2)
    let appended = Variable(Tensor(randomNormal: [2, 2, 3, 3], using: &random))
    buffer.append(appended)
    assertBitIdentical(buffer.window(2..<6).value, concatenate([slice(c.value, 2..<4, alongAxis: 1), appended.value], alongAxis: 1))
    assertBitIdentical(buffer.features.value, concatenate([c.value, appended.value], alongAxis: 1))
    assertStops(withMessageContaining: ["FeatureBuffer.window: channels 1..<4 do not start and end at piece boundaries"], in: self) {
      _ = buffer.window(1..<4)
    }
  }

  /// A window's batch statistics from the buffer are bit for bit those computed over the window,
  /// for windows starting inside the first maps, across pieces, and asked for again.
  func testFeatureBufferStatisticsMatchTheirWindows() {
    for dtype in [DType.float32, .float64] {
      let first = Variable(Tensor(randomNormal: [3, 4, 5, 2], mean: 1, standardDeviation: 2, dtype: dtype, using: &random))
      let buffer = FeatureBuffer(capacity: 7, first: first, pieceSize: 2)
      for range in [0..<4, 2..<4] {
        let (mean, variance) = buffer.batchStatistics(range), expected = batchNormStatistics(buffer.window(range).value)
        assertBitIdentical(mean, expected.mean, "\(dtype) mean of \(range)")
        assertBitIdentical(variance, expected.variance, "\(dtype) variance of \(range)")
      }
      buffer.append(Variable(Tensor(randomNormal: [3, 3, 5, 2], mean: -3, dtype: dtype, using: &random)))
      for range in [0..<7, 2..<7, 4..<7, 0..<7] {
        let (mean, variance) = buffer.batchStatistics(range), expected = batchNormStatistics(buffer.window(range).value)
        assertBitIdentical(mean, expected.mean, "\(dtype) mean of \(range)")
        assertBitIdentical(variance, expected.variance, "\(dtype) variance of \(range)")
      }
    }
    let buffer = FeatureBuffer(capacity: 6, first: Variable(Tensor(zeros: [1, 4, 2, 2])), pieceSize: 2)
    assertStops(withMessageContaining: ["FeatureBuffer.batchStatistics: channels 0..<5 do not start and end at piece boundaries"], in: self) {
      _ = buffer.batchStatistics(0..<5)
    }
  }
}
