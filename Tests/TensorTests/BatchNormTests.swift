import Reprise
import TestSupport
import XCTest

/// The fused batch-norm kernels against the same formulas written with reductions and broadcasting.
final class BatchNormTests: XCTestCase {
  /// In two sizes: channels split into ranges, and channels large enough to be claimed one at a
  /// time by the threads (12,288 values each).
  func testKernelsMatchComposedFormulas() {
    for shape in [[3, 4, 5, 6], [2, 4, 64, 96]] { checkKernels(shape) }
  }

  private func checkKernels(_ shape: [Int], file: StaticString = #filePath, line: UInt = #line) {
    var random = RandomGenerator(seed: 21)
    let plain = Tensor(randomNormal: shape, mean: 1, standardDeviation: 2, dtype: .float64, using: &random)
    let channelMajor = permute(permute(plain, [1, 0, 2, 3]).contiguous(), [1, 0, 2, 3])
    let weight = Tensor(randomNormal: [4], dtype: .float64, using: &random)
    let bias = Tensor(randomNormal: [4], dtype: .float64, using: &random)
    let dy = Tensor(randomNormal: shape, dtype: .float64, using: &random)
    let eps = 1e-5
    let batchMean = mean(plain, alongAxes: [0, 2, 3], keepingDimensions: true)
    let batchVariance = variance(plain, alongAxes: [0, 2, 3], keepingDimensions: true)
    let xhat = (plain - batchMean) / sqrt(batchVariance + eps)
    let y = xhat * reshape(weight, to: [1, 4, 1, 1]) + reshape(bias, to: [1, 4, 1, 1])
    // dx = w / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat))
    let dxExpected = reshape(weight, to: [1, 4, 1, 1]) / sqrt(batchVariance + eps)
      * (dy - mean(dy, alongAxes: [0, 2, 3], keepingDimensions: true) - xhat * mean(dy * xhat, alongAxes: [0, 2, 3], keepingDimensions: true))
    for x in [plain, channelMajor] {
      let stats = batchNormStatistics(x)
      assertClose(stats.mean, reshape(batchMean, to: [4]), relativeTolerance: 1e-12, "\(shape)", file: file, line: line)
      assertClose(stats.variance, reshape(batchVariance, to: [4]), relativeTolerance: 1e-12, "\(shape)", file: file, line: line)
      let out = batchNormalized(x, mean: stats.mean, variance: stats.variance, weight: weight, bias: bias, epsilon: eps)
      XCTAssertTrue(Shape.sameLayout(out.shape, out.strides, x.strides), "\(shape)", file: file, line: line)
      assertClose(out, y, relativeTolerance: 1e-10, absoluteTolerance: 1e-12, "\(shape)", file: file, line: line)
      let g = batchNormBackward(dy, x, mean: stats.mean, variance: stats.variance, weight: weight, epsilon: eps)
      assertClose(g.input, dxExpected, relativeTolerance: 1e-9, absoluteTolerance: 1e-12, "\(shape)", file: file, line: line)
      assertClose(g.weight, sum(dy * xhat, alongAxes: [0, 2, 3]), relativeTolerance: 1e-10, "\(shape)", file: file, line: line)
      assertClose(g.bias, sum(dy, alongAxes: [0, 2, 3]), relativeTolerance: 1e-10, "\(shape)", file: file, line: line)
    }
  }

  /// Into a destination of parts, the input gradient is written over the overwriting parts and
  /// added (`old + new`, bit for bit) to the others, with and without the fused ReLU (capped or not);
  /// the weight and bias gradients are those of the plain kernel.
  func testBackwardIntoPartsWritesOrAdds() {
    var random = RandomGenerator(seed: 22)
    let shape = [3, 5, 4, 4]
    let x = channelMajor(Tensor(randomNormal: shape, dtype: .float64, using: &random))
    let dy = Tensor(randomNormal: shape, dtype: .float64, using: &random)
    let weight = Tensor(randomNormal: [5], dtype: .float64, using: &random), bias = Tensor(randomNormal: [5], dtype: .float64, using: &random)
    let stats = batchNormStatistics(x)
    for (relu, ceiling) in [(false, nil), (true, nil), (true, 0.5)] as [(Bool, Double?)] {
      let expected = batchNormBackward(
        dy, x, mean: stats.mean, variance: stats.variance, weight: weight, bias: bias, epsilon: 1e-5, applyingReLU: relu, ceiling: ceiling)
      let g = assertDeliversIntoParts(expected.input, split: 2, using: &random, "ReLU \(relu)") {
        batchNormBackward(
          dy, x, mean: stats.mean, variance: stats.variance, weight: weight, bias: bias, epsilon: 1e-5, applyingReLU: relu,
          ceiling: ceiling, into: $0)
      }
      assertBitIdentical(g.weight, expected.weight, "weight, ReLU \(relu)")
      assertBitIdentical(g.bias, expected.bias, "bias, ReLU \(relu)")
    }
  }

  /// With a ceiling, the fused ReLU is `clamp` to [0, ceiling] of the normalisation, and its backward
  /// pass is the normalisation's of `clampBackward`'s gradient (zero at both ends): bit for bit, in
  /// Float32 and Float64, channel-major and row-major, with the ceiling crossed by many values.
  func testCappedReLUIsTheClampOfTheNormalisation() {
    var random = RandomGenerator(seed: 23)
    for dtype in DType.allCases {
      // 50 values a plane: the vector loops' blocks of 8 and their tails.
      let plain = Tensor(randomNormal: [3, 4, 5, 10], mean: 1, standardDeviation: 2, dtype: dtype, using: &random)
      let channelMajor = permute(permute(plain, [1, 0, 2, 3]).contiguous(), [1, 0, 2, 3])
      let weight = Tensor(randomNormal: [4], dtype: dtype, using: &random), bias = Tensor(randomNormal: [4], dtype: dtype, using: &random)
      let dy = Tensor(randomNormal: plain.shape, dtype: dtype, using: &random), ceiling = 0.75
      for x in [plain, channelMajor] {
        let (mean, variance) = batchNormStatistics(x)
        let normalized = batchNormalized(x, mean: mean, variance: variance, weight: weight, bias: bias, epsilon: 1e-5)
        let capped = batchNormalized(
          x, mean: mean, variance: variance, weight: weight, bias: bias, epsilon: 1e-5, applyingReLU: true, ceiling: ceiling)
        assertBitIdentical(capped, clamp(normalized, min: 0, max: ceiling), "forward \(dtype)")
        let above = capped.scalars(as: Double.self).filter { $0 == ceiling }.count
        XCTAssertGreaterThan(above, 20, "values above the ceiling, \(dtype)")
        let fused = batchNormBackward(
          dy, x, mean: mean, variance: variance, weight: weight, bias: bias, epsilon: 1e-5, applyingReLU: true, ceiling: ceiling)
        let composed = batchNormBackward(
          clampBackward(dy, input: normalized, min: 0, max: ceiling), x, mean: mean, variance: variance, weight: weight, epsilon: 1e-5)
        assertBitIdentical(fused.input, composed.input, "input gradient \(dtype)")
        assertBitIdentical(fused.weight, composed.weight, "weight gradient \(dtype)")
        assertBitIdentical(fused.bias, composed.bias, "bias gradient \(dtype)")
      }
    }
  }

  func testCeilingNeedsTheReLU() {
    assertStops(withMessageContaining: ["batchNormalized: a ceiling caps the fused ReLU"], in: self) {
      let x = Tensor(zeros: [2, 4, 3, 3])
      _ = batchNormalized(x, mean: Tensor(zeros: [4]), variance: Tensor(ones: [4]), weight: nil, bias: nil, epsilon: 1e-5, ceiling: 6)
    }
  }

  func testDestinationMustTileTheInput() {
    assertStops(withMessageContaining: ["batchNormBackward: destination parts [[2, 3, 2, 2]]", "do not tile the input [2, 4, 2, 2]"], in: self) {
      let x = permute(permute(Tensor(ones: [2, 4, 2, 2]), [1, 0, 2, 3]).contiguous(), [1, 0, 2, 3])
      let part = permute(permute(Tensor(zeros: [2, 3, 2, 2]), [1, 0, 2, 3]).contiguous(), [1, 0, 2, 3])
      _ = batchNormBackward(x, x, mean: Tensor(zeros: [4]), variance: Tensor(ones: [4]), weight: nil, epsilon: 1e-5, into: GradientDestination([(part, true)]))
    }
  }

  func testPerChannelShapesAreChecked() {
    assertStops(withMessageContaining: ["batchNormalized: weight has shape [3] (float32), expected [4] (float32) for input [2, 4, 3, 3]"], in: self) {
      let x = Tensor(zeros: [2, 4, 3, 3])
      _ = batchNormalized(x, mean: Tensor(zeros: [4]), variance: Tensor(ones: [4]), weight: Tensor(ones: [3]), bias: nil, epsilon: 1e-5)
    }
  }
}
