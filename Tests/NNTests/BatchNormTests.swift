import Reprise
import TestSupport
import XCTest

/// BatchNorm2d's running statistics follow PyTorch exactly.
final class BatchNorm2dTests: XCTestCase {
  func testRunningStatisticsUseUnbiasedVarianceAndMomentum() {
    let bn = BatchNorm2d(channels: 2)
    bn.convert(to: .float64)
    // Channel 0 holds 1, 2, 3, 4 and channel 1 holds 2, 2, 2, 6 (N = 2, H = 1, W = 2).
    let x = Variable(Tensor([1, 2, 2, 2, 3, 4, 2, 6] as [Double], shape: [2, 2, 1, 2]))
    let y = bn(x)
    // Means 2.5 and 3; unbiased variances 5/3 and 4; biased 1.25 and 3.
    assertClose(bn.runningMean.value, Tensor([0.25, 0.3], shape: [2]), relativeTolerance: 1e-12)
    assertClose(bn.runningVariance.value, Tensor([0.9 + 0.1 * 5 / 3, 0.9 + 0.4], shape: [2]), relativeTolerance: 1e-12)
    XCTAssertEqual(bn.batchesTracked, 1)
    XCTAssertEqual(y.value[0, 0, 0, 0], (1 - 2.5) / (1.25 + 1e-5).squareRoot(), accuracy: 1e-12)
    withLearningPhase(.inference) {
      let z = bn(x)
      XCTAssertEqual(z.value[0, 0, 0, 0], (1 - 0.25) / (0.9 + 0.1 * 5 / 3 + 1e-5).squareRoot(), accuracy: 1e-12)
    }
    XCTAssertEqual(bn.batchesTracked, 1, "inference leaves the statistics alone")
  }

  /// Inference without recording takes a fused kernel; it equals the differentiable composite.
  func testInferenceFastPathEqualsComposite() {
    var random = RandomGenerator(seed: 4)
    let bn = BatchNorm2d(channels: 3)
    bn.convert(to: .float64)
    bn.runningMean.value = Tensor(randomNormal: [3], dtype: .float64, using: &random)
    bn.runningVariance.value = Tensor(randomUniform: [3], lower: 0.5, upper: 2, dtype: .float64, using: &random)
    bn.weight.value = Tensor(randomNormal: [3], dtype: .float64, using: &random)
    let x = Variable(Tensor(randomNormal: [2, 3, 4, 5], dtype: .float64, using: &random), requiresGrad: true)
    withLearningPhase(.inference) {
      for relu in [false, true] {
        let fused = withoutRecording { bn(x, applyingReLU: relu) }
        let composite = bn(x, applyingReLU: relu)
        XCTAssertFalse(composite.isLeaf)
        assertClose(fused.value, composite.value, relativeTolerance: 1e-12, absoluteTolerance: 1e-12)
      }
    }
  }

  /// With a residual, the layer is `addReLU(bn(x), r)` (or `bn(x) + r`): in training the same
  /// outputs, gradients and running statistics bit for bit; in inference the same outputs.
  func testAddingResidualEqualsTheComposition() {
    var random = RandomGenerator(seed: 13)
    let x = Tensor(randomNormal: [2, 3, 4, 5], dtype: .float32, using: &random)
    let r = Tensor(randomNormal: [2, 3, 4, 5], dtype: .float32, using: &random)
    let gamma = Tensor(randomNormal: [3], dtype: .float32, using: &random)
    for relu in [false, true] {
      var results: [[Tensor]] = []
      for fused in [true, false] {
        let bn = BatchNorm2d(channels: 3)
        bn.weight.value = gamma
        let input = Variable(x, requiresGrad: true), residual = Variable(r, requiresGrad: true)
        let y = fused ? bn(input, adding: residual, applyingReLU: relu) : relu ? addReLU(bn(input), residual) : bn(input) + residual
        sum(y * y).backward()
        let inferred = withLearningPhase(.inference) {
          fused ? bn(input, adding: residual, applyingReLU: relu) : relu ? addReLU(bn(input), residual) : bn(input) + residual
        }
        results.append([y.value, input.grad!, residual.grad!, bn.weight.grad!, bn.bias.grad!, bn.runningMean.value, bn.runningVariance.value, inferred.value])
      }
      for (i, (a, b)) in zip(results[0], results[1]).enumerated() { assertBitIdentical(a, b, "ReLU \(relu), tensor \(i)") }
    }
    // A residual that would broadcast stops in inference as in training.
    assertStops(withMessageContaining: ["BatchNorm2d: residual [1, 3, 1, 1] (float32) does not match input [2, 3, 4, 5] (float32)"], in: self) {
      _ = withLearningPhase(.inference) { BatchNorm2d(channels: 3)(Variable(x), adding: Variable(Tensor(zeros: [1, 3, 1, 1]))) }
    }
  }

  /// Scaled by an excitation of its plane means, plus a residual, then a ReLU: in training the
  /// composition's outputs, gradients (the excitation's weights' too) and running statistics bit
  /// for bit; in inference the composition's outputs.
  func testExcitationEqualsTheComposition() {
    var random = RandomGenerator(seed: 14)
    let x = Tensor(randomNormal: [2, 3, 4, 5], dtype: .float32, using: &random)
    let r = Tensor(randomNormal: [2, 3, 4, 5], dtype: .float32, using: &random)
    let gamma = Tensor(randomNormal: [3], dtype: .float32, using: &random), w1 = Tensor(randomNormal: [3, 3], dtype: .float32, using: &random)
    var results: [[Tensor]] = []
    for fused in [true, false] {
      let bn = BatchNorm2d(channels: 3), reduce = Variable(w1, requiresGrad: true)
      bn.weight.value = gamma
      let excitation = { (m: Variable) in reshape(sigmoid(matmul(m, transpose(reduce))), to: [2, 3, 1, 1]) }
      let input = Variable(x, requiresGrad: true), residual = Variable(r, requiresGrad: true)
      func apply() -> Variable {
        guard !fused else { return bn(input, excitation: excitation, adding: residual) }
        let h = bn(input)
        return addReLU(h, scaledBy: excitation(mean(h, alongAxes: [2, 3])), residual)
      }
      let y = apply()
      sum(y * y).backward()
      let inferred = withLearningPhase(.inference) { apply() }
      results.append([y.value, input.grad!, residual.grad!, bn.weight.grad!, bn.bias.grad!, reduce.grad!, bn.runningMean.value, bn.runningVariance.value, inferred.value])
    }
    for (i, (a, b)) in zip(results[0], results[1]).enumerated() { assertBitIdentical(a, b, "tensor \(i)") }
  }

  /// Statistics the caller passes (a feature buffer's) give the same outputs, gradients and running
  /// statistics, bit for bit, as statistics computed from the input, plain and fused with a
  /// convolution; statistics of the wrong size stop with the shapes.
  func testGivenStatisticsEqualComputedOnes() {
    var random = RandomGenerator(seed: 12)
    let x = Tensor(randomNormal: [2, 4, 3, 3], mean: 0.5, dtype: .float64, using: &random)
    let statistics = batchNormStatistics(x), gamma = Tensor(randomNormal: [4], dtype: .float64, using: &random)
    for fused in [false, true] {
      var results: [[Tensor]] = []
      for given in [nil, statistics] {
        RandomGenerator.global = RandomGenerator(seed: 3)
        let bn = BatchNorm2d(channels: 4), conv = Conv2d(inputChannels: 4, outputChannels: 2, kernelSize: 3, padding: 1)
        bn.convert(to: .float64)
        conv.convert(to: .float64)
        bn.weight.value = gamma
        let input = Variable(x, requiresGrad: true)
        let y = fused ? batchNormReLUConv(input, norm: bn, conv: conv, statistics: given) : conv(bn(input, applyingReLU: true, statistics: given))
        sum(y * y).backward()
        results.append([y.value, input.grad!, bn.weight.grad!, bn.bias.grad!, conv.weight.grad!, bn.runningMean.value, bn.runningVariance.value])
      }
      for (i, (a, b)) in zip(results[0], results[1]).enumerated() { assertBitIdentical(a, b, "fused \(fused), tensor \(i)") }
    }
    assertStops(withMessageContaining: ["batchNorm: statistics [3] and [3] (float64) do not fit input [2, 4, 3, 3] (float64)"], in: self) {
      let wrong = (Tensor(zeros: [3], dtype: .float64), Tensor(ones: [3], dtype: .float64))
      let bn = BatchNorm2d(channels: 4)
      bn.convert(to: .float64)
      _ = bn(Variable(x), applyingReLU: false, statistics: wrong)
    }
  }

  func testWrongChannelsNameShapes() {
    assertStops(withMessageContaining: ["BatchNorm2d: input [2, 3, 4, 4] does not have 5 channels"], in: self) {
      _ = BatchNorm2d(channels: 5)(Variable(Tensor(zeros: [2, 3, 4, 4])))
    }
  }

  /// A ceiling without the ReLU it caps stops in every phase, the recorded inference pass (which
  /// composes `clamp` rather than calling the fused kernel) included.
  func testCeilingWithoutTheReLUStopsInEveryPhase() {
    assertStops(withMessageContaining: ["BatchNorm2d: a ceiling caps the fused ReLU"], in: self) {
      let x = Variable(Tensor(zeros: [2, 3, 4, 4]), requiresGrad: true)
      _ = withLearningPhase(.inference) { BatchNorm2d(channels: 3)(x, applyingReLU: false, ceiling: 6, statistics: nil) }
    }
  }
}
