import TestSupport
import XCTest

@testable import TensorModule

/// The end of a squeeze-and-excitation block from the normalisation's input, forward and backward,
/// is the composition of `batchNormalized`, `sum`, `addReLU(_:scaledBy:_:)`, `addReLUBackward` and
/// `batchNormBackward` bit for bit: in Float32 and Float64, channel-major and row-major maps, planes
/// whose length is not a multiple of 8 (whose vectors straddle planes in a channel-major row), a
/// gradient written into a destination of parts, and the layouts left to the composition.
final class BatchNormExcitationTests: XCTestCase {
  /// The memory order of a tensor's axes longer than 1.
  func order(_ t: Tensor) -> [Int] { Shape.memoryOrder(t.shape, t.strides).filter { t.shape[$0] != 1 } }

  func testEveryPassEqualsTheComposition() {
    var random = RandomGenerator(seed: 61)
    for dtype in [DType.float32, .float64] {
      for shape in [[3, 5, 7, 9], [2, 4, 8, 8], [4, 3, 1, 1], [3, 2, 2, 3]] {
        func normal(_ shape: [Int]) -> Tensor { Tensor(randomNormal: shape, dtype: dtype, using: &random) }
        let (n, c) = (shape[0], shape[1]), weight = normal([c]), bias = normal([c]), scale = sigmoid(normal([n, c, 1, 1]))
        for (x, layout) in [(channelMajor(normal(shape)), "channel-major"), (normal(shape), "row-major")] {
          let stats = batchNormStatistics(x), name = "\(dtype) \(layout) \(shape)"
          let residual = normal(shape).copied(strides: x.strides), gradient = normal(shape).copied(strides: x.strides)
          if shape[2] * shape[3] > 1 { XCTAssertTrue(batchNormExcitationFuses(x, scale: scale, residual: residual), "\(name): one pass") }
          let h = batchNormalized(x, mean: stats.mean, variance: stats.variance, weight: weight, bias: bias, epsilon: 1e-5)

          let sums = batchNormPlaneSums(x, mean: stats.mean, variance: stats.variance, weight: weight, bias: bias, epsilon: 1e-5)
          let expectedSums = sum(h, alongAxes: [2, 3])
          assertBitIdentical(sums, expectedSums, "\(name): plane sums")
          XCTAssertEqual(order(sums), order(expectedSums), "\(name): the sums are laid out as a sum's")

          let y = batchNormAddReLU(x, mean: stats.mean, variance: stats.variance, weight: weight, bias: bias, epsilon: 1e-5, scaledBy: scale, adding: residual)
          assertBitIdentical(y, addReLU(h, scaledBy: scale, residual), "\(name): value")
          XCTAssertEqual(y.strides, x.strides, "\(name): the result keeps the input's layout")

          let composed = addReLUBackward(gradient, h, scaledBy: scale, residual)
          let fused = batchNormAddReLUBackward(
            gradient, x, mean: stats.mean, variance: stats.variance, weight: weight, bias: bias, epsilon: 1e-5, scaledBy: scale, adding: residual)
          assertBitIdentical(fused.residual, composed.b, "\(name): gradient of the residual")
          assertBitIdentical(fused.scale, composed.scale, "\(name): gradient of the scale")
          XCTAssertEqual(order(fused.scale), order(composed.scale), "\(name): the scale's gradient is laid out as a sum")

          // The normalisation's gradients from the masked gradient, the scale and the pooled means'
          // gradient (one value a plane), against the gradient written out as the tape would:
          // the scaled gradient, plus the means' broadcast.
          let shift = normal([n, c])
          let written = composed.a + broadcast(reshape(shift, to: [n, c, 1, 1]), to: shape)
          let expected = batchNormBackward(written, x, mean: stats.mean, variance: stats.variance, weight: weight, epsilon: 1e-5)
          let normalized = batchNormBackward(
            fused.residual, x, mean: stats.mean, variance: stats.variance, weight: weight, epsilon: 1e-5, scaledBy: scale, shiftedBy: shift)
          assertBitIdentical(normalized.input, expected.input, "\(name): gradient of the input")
          assertBitIdentical(normalized.weight, expected.weight, "\(name): gradient of the weight")
          assertBitIdentical(normalized.bias, expected.bias, "\(name): gradient of the bias")
        }
      }
    }
  }

  /// Into a destination of parts, the input gradient is written over the overwriting part and added
  /// (`old + new`) to the other; the weight's and bias's gradients are unchanged.
  func testBackwardIntoParts() {
    var random = RandomGenerator(seed: 62)
    let shape = [3, 5, 4, 4]
    func normal(_ shape: [Int]) -> Tensor { channelMajor(Tensor(randomNormal: shape, dtype: .float32, using: &random)) }
    let x = normal(shape), gradient = normal(shape), weight = Tensor(randomNormal: [5], dtype: .float32, using: &random)
    let scale = Tensor(randomNormal: [3, 5, 1, 1], dtype: .float32, using: &random), shift = Tensor(randomNormal: [3, 5], dtype: .float32, using: &random)
    let stats = batchNormStatistics(x)
    let expected = batchNormBackward(gradient, x, mean: stats.mean, variance: stats.variance, weight: weight, epsilon: 1e-5, scaledBy: scale, shiftedBy: shift)
    let g = assertDeliversIntoParts(expected.input, split: 2, using: &random) {
      batchNormBackward(
        gradient, x, mean: stats.mean, variance: stats.variance, weight: weight, epsilon: 1e-5, scaledBy: scale, shiftedBy: shift, into: $0)
    }
    assertBitIdentical(g.weight, expected.weight, "weight")
    assertBitIdentical(g.bias, expected.bias, "bias")
  }

  /// A residual laid out otherwise than the input, or a scale of another shape, takes the composition.
  func testOtherLayoutsTakeTheComposition() {
    var random = RandomGenerator(seed: 63)
    let shape = [2, 3, 5, 5]
    func normal(_ shape: [Int]) -> Tensor { Tensor(randomNormal: shape, dtype: .float32, using: &random) }
    let x = channelMajor(normal(shape)), residual = normal(shape), gradient = normal(shape), stats = batchNormStatistics(x)
    let h = batchNormalized(x, mean: stats.mean, variance: stats.variance, weight: nil, bias: nil, epsilon: 1e-5)
    for scale in [sigmoid(normal([2, 3, 1, 1])), sigmoid(normal([1, 3, 1, 1]))] {
      XCTAssertFalse(batchNormExcitationFuses(x, scale: scale, residual: residual))
      let y = batchNormAddReLU(x, mean: stats.mean, variance: stats.variance, weight: nil, bias: nil, epsilon: 1e-5, scaledBy: scale, adding: residual)
      assertBitIdentical(y, addReLU(h, scaledBy: scale, residual), "value, scale \(scale.shape)")
      let fused = batchNormAddReLUBackward(
        gradient, x, mean: stats.mean, variance: stats.variance, weight: nil, bias: nil, epsilon: 1e-5, scaledBy: scale, adding: residual)
      let composed = addReLUBackward(gradient, h, scaledBy: scale, residual)
      assertBitIdentical(fused.residual, composed.b, "residual's gradient, scale \(scale.shape)")
      assertBitIdentical(fused.scale, composed.scale, "scale's gradient, scale \(scale.shape)")
    }
  }

  func testShapesAreChecked() {
    let x = Tensor(zeros: [2, 3, 4, 4]), stats = (mean: Tensor(zeros: [3]), variance: Tensor(ones: [3]))
    assertStops(withMessageContaining: ["batchNormAddReLU: residual [2, 3, 4, 5] (float32) does not match input [2, 3, 4, 4]"], in: self) {
      _ = batchNormAddReLU(
        x, mean: stats.mean, variance: stats.variance, weight: nil, bias: nil, epsilon: 1e-5, scaledBy: Tensor(ones: [2, 3, 1, 1]),
        adding: Tensor(zeros: [2, 3, 4, 5]))
    }
    assertStops(withMessageContaining: ["batchNormBackward: scale [2, 3] and shift [3, 2] (float32) do not give one value per image and channel of [2, 3, 4, 4]"], in: self) {
      _ = batchNormBackward(
        x, x, mean: stats.mean, variance: stats.variance, weight: nil, epsilon: 1e-5, scaledBy: Tensor(ones: [2, 3]), shiftedBy: Tensor(ones: [3, 2]))
    }
  }
}
