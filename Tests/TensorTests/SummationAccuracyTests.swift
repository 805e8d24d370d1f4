import Reprise
import TestSupport
import XCTest

/// Float32 reductions over the positions of a training batch (64 images of 32x32, 65,536 terms
/// per channel) against the same reductions in Float64 on the same values.
final class SummationAccuracyTests: XCTestCase {
  /// [64, 2, 32, 32] of `mean + N(0, 1)`, channel-major as convolutions leave feature maps.
  func batch(mean: Double, seed: UInt64) -> Tensor {
    var random = RandomGenerator(seed: seed)
    return permute(permute(Tensor(randomNormal: [64, 2, 32, 32], mean: mean, using: &random), [1, 0, 2, 3]).contiguous(), [1, 0, 2, 3])
  }

  /// One unit in the last place of `value` in Float32.
  func ulp(_ value: Double) -> Double { Double(Float(value).ulp) }

  /// Values of 100 + N(0, 1): the mean is within one unit in the last place of the Float64 mean
  /// (lane-by-lane running sums were 2.4 units off), and the variance within 1e-6 (a one-pass
  /// E[x²] - E[x]² loses three digits here).
  func testBatchStatisticsOfValuesWithALargeMean() {
    for layout in ["channel-major", "row-major"] {
      let x = layout == "channel-major" ? batch(mean: 100, seed: 1) : batch(mean: 100, seed: 1).contiguous()
      let single = batchNormStatistics(x), double = batchNormStatistics(x.converted(to: .float64))
      let m32 = single.mean.scalars(as: Double.self), m64 = double.mean.scalars(as: Double.self)
      let v32 = single.variance.scalars(as: Double.self), v64 = double.variance.scalars(as: Double.self)
      for c in 0..<2 {
        XCTAssertLessThanOrEqual(abs(m32[c] - m64[c]), ulp(m64[c]), "\(layout) mean of channel \(c)")
        XCTAssertLessThanOrEqual(abs(v32[c] - v64[c]), 1e-6 * v64[c], "\(layout) variance of channel \(c)")
      }
    }
  }

  /// The two per-channel sums of the batch-norm backward pass: the bias gradient (the sum of the
  /// output gradient, here of mean 1 so that nothing cancels) within one unit in the last place
  /// (running sums were several units off), and the weight gradient within 1e-5 of its size.
  func testBatchNormBackwardSums() {
    let x = batch(mean: 100, seed: 2)
    for gradientMean in [1.0, 0] {
      let dy = batch(mean: gradientMean, seed: 3)
      let s32 = batchNormStatistics(x), s64 = batchNormStatistics(x.converted(to: .float64))
      let g32 = batchNormBackward(dy, x, mean: s32.mean, variance: s32.variance, weight: nil, epsilon: 1e-5)
      let g64 = batchNormBackward(
        dy.converted(to: .float64), x.converted(to: .float64), mean: s64.mean, variance: s64.variance, weight: nil, epsilon: 1e-5)
      let b32 = g32.bias.scalars(as: Double.self), b64 = g64.bias.scalars(as: Double.self)
      let w32 = g32.weight.scalars(as: Double.self), w64 = g64.weight.scalars(as: Double.self)
      for c in 0..<2 {
        if gradientMean != 0 {
          XCTAssertLessThanOrEqual(abs(b32[c] - b64[c]), ulp(b64[c]), "bias gradient of channel \(c)")
        } else {
          XCTAssertLessThanOrEqual(abs(w32[c] - w64[c]), 1e-5 * abs(w64[c]), "weight gradient of channel \(c)")
        }
      }
    }
  }

  /// `sum(alongAxes:)` over a long axis: within one unit in the last place of the Float64 sum.
  func testLongSumAlongAnAxis() {
    let x = permute(reshape(batch(mean: 1, seed: 4).contiguous(), to: [64 * 2, 1024]), [1, 0]).contiguous()
    let s32 = sum(x, alongAxes: [1]).scalars(as: Double.self), s64 = sum(x.converted(to: .float64), alongAxes: [1]).scalars(as: Double.self)
    for i in [0, 511, 1023] { XCTAssertLessThanOrEqual(abs(s32[i] - s64[i]), ulp(s64[i]), "row \(i)") }
    let total32 = sum(x).scalar, total64 = sum(x.converted(to: .float64)).scalar
    XCTAssertLessThanOrEqual(abs(total32 - total64), ulp(total64), "all 131,072 elements")
  }
}
