import TestSupport
import XCTest

@testable import TensorModule

/// Batch normalisation with a residual sum (and a ReLU of it) is, forward and backward, the
/// composition of `batchNormalized`, `addReLU` (or `+`), `reluBackward` and `batchNormBackward`,
/// bit for bit: in Float32 and Float64, channel-major and row-major maps, a residual and an output
/// gradient laid out differently from the input, planes whose length is not a multiple of 8, and a
/// gradient written into a destination of parts.
final class BatchNormResidualTests: XCTestCase {
  func testForwardAndBackwardEqualTheComposition() {
    var random = RandomGenerator(seed: 31)
    for dtype in [DType.float32, .float64] {
      for shape in [[3, 5, 7, 9], [2, 4, 8, 8], [4, 3, 1, 1]] {
        func normal(_ shape: [Int]) -> Tensor { Tensor(randomNormal: shape, dtype: dtype, using: &random) }
        let c = shape[1], weight = normal([c]), bias = normal([c])
        for (x, layout) in [(channelMajor(normal(shape)), "channel-major"), (normal(shape), "row-major")] {
          let stats = batchNormStatistics(x), name = "\(dtype) \(layout) \(shape)"
          // The residual in the other layout from the input's, as a block's shortcut may be.
          let residual = layout == "row-major" ? channelMajor(normal(shape)) : normal(shape), gradient = normal(shape)
          let h = batchNormalized(x, mean: stats.mean, variance: stats.variance, weight: weight, bias: bias, epsilon: 1e-5)
          for relu in [false, true] {
            let y = batchNormalized(
              x, mean: stats.mean, variance: stats.variance, weight: weight, bias: bias, epsilon: 1e-5, adding: residual, applyingReLU: relu)
            assertBitIdentical(y, relu ? addReLU(h, residual) : h + residual, "\(name) ReLU \(relu): value")
            XCTAssertEqual(y.strides, x.strides, "\(name): the result keeps the input's layout")
          }
          let y = batchNormalized(
            x, mean: stats.mean, variance: stats.variance, weight: weight, bias: bias, epsilon: 1e-5, adding: residual, applyingReLU: true)
          let masked = reluBackward(gradient, output: y)
          let expected = batchNormBackward(masked, x, mean: stats.mean, variance: stats.variance, weight: weight, epsilon: 1e-5)
          let fused = batchNormAddReLUBackward(gradient, x, output: y, mean: stats.mean, variance: stats.variance, weight: weight, epsilon: 1e-5)
          assertBitIdentical(fused.residual, masked, "\(name): gradient of the residual")
          assertBitIdentical(fused.input, expected.input, "\(name): gradient of the input")
          assertBitIdentical(fused.weight, expected.weight, "\(name): gradient of the weight")
          assertBitIdentical(fused.bias, expected.bias, "\(name): gradient of the bias")
        }
      }
    }
  }

  /// Into a destination of parts, the input gradient is written over the overwriting part and added
  /// (`old + new`) to the other; the residual's, weight's and bias's gradients are unchanged.
  func testBackwardIntoParts() {
    var random = RandomGenerator(seed: 32)
    let shape = [3, 5, 4, 4]
    func normal(_ shape: [Int]) -> Tensor { channelMajor(Tensor(randomNormal: shape, dtype: .float32, using: &random)) }
    let x = normal(shape), residual = normal(shape), gradient = normal(shape), weight = Tensor(randomNormal: [5], dtype: .float32, using: &random)
    let stats = batchNormStatistics(x)
    let y = batchNormalized(x, mean: stats.mean, variance: stats.variance, weight: weight, bias: nil, epsilon: 1e-5, adding: residual, applyingReLU: true)
    let expected = batchNormAddReLUBackward(gradient, x, output: y, mean: stats.mean, variance: stats.variance, weight: weight, epsilon: 1e-5)
    let g = assertDeliversIntoParts(expected.input!, split: 2, using: &random) {
      batchNormAddReLUBackward(gradient, x, output: y, mean: stats.mean, variance: stats.variance, weight: weight, epsilon: 1e-5, into: $0)
    }
    XCTAssertNil(g.input)
    assertBitIdentical(g.residual, expected.residual, "residual")
    assertBitIdentical(g.weight, expected.weight, "weight")
    assertBitIdentical(g.bias, expected.bias, "bias")
  }

  func testShapesAreChecked() {
    let x = Tensor(zeros: [2, 3, 4, 4]), stats = (mean: Tensor(zeros: [3]), variance: Tensor(ones: [3]))
    assertStops(withMessageContaining: ["batchNormalized: residual [2, 3, 4, 5] (float32) does not match input [2, 3, 4, 4]"], in: self) {
      _ = batchNormalized(x, mean: stats.mean, variance: stats.variance, weight: nil, bias: nil, epsilon: 1e-5, adding: Tensor(zeros: [2, 3, 4, 5]))
    }
    assertStops(withMessageContaining: ["batchNormAddReLUBackward: output [2, 3, 4] (float32) does not match input [2, 3, 4, 4]"], in: self) {
      _ = batchNormAddReLUBackward(x, x, output: Tensor(zeros: [2, 3, 4]), mean: stats.mean, variance: stats.variance, weight: nil, epsilon: 1e-5)
    }
  }
}
