import Reprise
import TestSupport
import XCTest

/// The fused batch-norm kernels against the same formulas written with reductions and broadcasting.
final class BatchNormTests: XCTestCase {
  func testKernelsMatchComposedFormulas() {
    var random = RandomGenerator(seed: 21)
    let plain = Tensor(randomNormal: [3, 4, 5, 6], mean: 1, standardDeviation: 2, dtype: .float64, using: &random)
    let channelMajor = plain.permuted([1, 0, 2, 3]).contiguous().permuted([1, 0, 2, 3])
    let weight = Tensor(randomNormal: [4], dtype: .float64, using: &random)
    let bias = Tensor(randomNormal: [4], dtype: .float64, using: &random)
    let dy = Tensor(randomNormal: [3, 4, 5, 6], dtype: .float64, using: &random)
    let eps = 1e-5
    let mean = plain.mean(alongAxes: [0, 2, 3], keepingDimensions: true)
    let variance = plain.variance(alongAxes: [0, 2, 3], keepingDimensions: true)
    let xhat = (plain - mean) / sqrt(variance + eps)
    let y = xhat * weight.reshaped(to: [1, 4, 1, 1]) + bias.reshaped(to: [1, 4, 1, 1])
    // dx = w / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat))
    let dxExpected = weight.reshaped(to: [1, 4, 1, 1]) / sqrt(variance + eps)
      * (dy - dy.mean(alongAxes: [0, 2, 3], keepingDimensions: true) - xhat * (dy * xhat).mean(alongAxes: [0, 2, 3], keepingDimensions: true))
    for x in [plain, channelMajor] {
      let stats = batchNormStatistics(x)
      assertClose(stats.mean, mean.reshaped(to: [4]), relativeTolerance: 1e-12)
      assertClose(stats.variance, variance.reshaped(to: [4]), relativeTolerance: 1e-12)
      let out = batchNormalized(x, mean: stats.mean, variance: stats.variance, weight: weight, bias: bias, epsilon: eps)
      XCTAssertTrue(Shape.sameLayout(out.shape, out.strides, x.strides))
      assertClose(out, y, relativeTolerance: 1e-10, absoluteTolerance: 1e-12)
      let g = batchNormBackward(dy, x, mean: stats.mean, variance: stats.variance, weight: weight, epsilon: eps)
      assertClose(g.input, dxExpected, relativeTolerance: 1e-9, absoluteTolerance: 1e-12)
      assertClose(g.weight, (dy * xhat).sum(alongAxes: [0, 2, 3]), relativeTolerance: 1e-10)
      assertClose(g.bias, dy.sum(alongAxes: [0, 2, 3]), relativeTolerance: 1e-10)
    }
  }

  func testPerChannelShapesAreChecked() {
    assertStops(withMessageContaining: ["batchNormalized: weight has shape [3] (float32), expected [4] (float32) for input [2, 4, 3, 3]"], in: self) {
      let x = Tensor(zeros: [2, 4, 3, 3])
      _ = batchNormalized(x, mean: Tensor(zeros: [4]), variance: Tensor(ones: [4]), weight: Tensor(ones: [3]), bias: nil, epsilon: 1e-5)
    }
  }
}
