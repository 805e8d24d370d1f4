import Foundation
import Reprise
import TestSupport
import XCTest

/// Reductions over every subset of axes against reference loops.
final class ReductionTests: XCTestCase {
  /// Sums every element of `values` (shape `shape`) into the position that drops `axes`.
  static func referenceReduce(_ values: [Double], _ shape: [Int], _ axes: Set<Int>, _ combine: (Double, Double) -> Double, _ initial: Double) -> [Double] {
    let kept = shape.indices.filter { !axes.contains($0) }
    let outShape = kept.map { shape[$0] }
    var out = [Double](repeating: initial, count: outShape.reduce(1, *))
    for i in values.indices {
      var rest = i, index = [Int](repeating: 0, count: shape.count)
      for a in shape.indices.reversed() { index[a] = rest % shape[a]; rest /= shape[a] }
      var o = 0
      for a in kept { o = o * shape[a] + index[a] }
      out[o] = combine(out[o], values[i])
    }
    return out
  }

  /// Sums over leading or middle axes, which add whole rows into column accumulators, equal the
  /// reference loop across a block boundary (more than 512 rows) and keep Float32 accuracy.
  func testColumnSumsOverLeadingAndMiddleAxes() {
    var random = RandomGenerator(seed: 6)
    let shape = [3, 700, 37]
    let x = Tensor(randomNormal: shape, mean: 100, dtype: .float64, using: &random)
    let v = x.scalars(as: Double.self)
    for axes in [[0, 1], [1], [0]] {
      let expected = Self.referenceReduce(v, shape, Set(axes), +, 0)
      let total = sum(x, alongAxes: axes)
      XCTAssertEqual(total.shape, shape.indices.filter { !axes.contains($0) }.map { shape[$0] })
      let sum64 = total.scalars(as: Double.self), sum32 = sum(x.converted(to: .float32), alongAxes: axes).scalars(as: Double.self)
      for (i, e) in expected.enumerated() {
        XCTAssertEqual(sum64[i], e, accuracy: 1e-9 * Swift.abs(e), "Float64 sum over \(axes) at \(i)")
        // Float32 terms are rounded before they are added: allow that, not a growing error.
        XCTAssertEqual(sum32[i], e, accuracy: 1e-6 * Swift.abs(e), "Float32 sum over \(axes) at \(i)")
      }
    }
  }

  func testSumMeanMaxVarianceOverEveryAxisSet() {
    var random = RandomGenerator(seed: 5)
    let shape = [3, 4, 5]
    let x = Tensor(randomNormal: shape, dtype: .float64, using: &random)
    // A channel-major-like permuted view must reduce the same way.
    let permutedStorage = permute(permute(x, [1, 0, 2]).contiguous(), [1, 0, 2])
    let v = x.scalars(as: Double.self)
    for mask in 1..<8 {
      let axes = (0..<3).filter { mask & (1 << $0) != 0 }
      let count = Double(axes.reduce(1) { $0 * shape[$1] })
      let sums = Self.referenceReduce(v, shape, Set(axes), +, 0)
      let keptShape = shape.indices.filter { !axes.contains($0) }.map { shape[$0] }
      for input in [x, permutedStorage] {
        assertClose(sum(input, alongAxes: axes), Tensor(sums, shape: keptShape), "sum \(axes)")
        assertClose(mean(input, alongAxes: axes), Tensor(sums.map { $0 / count }, shape: keptShape), "mean \(axes)")
        let maxima = Self.referenceReduce(v, shape, Set(axes), { Swift.max($0, $1) }, -.infinity)
        assertClose(max(input, alongAxes: axes), Tensor(maxima, shape: keptShape), "max \(axes)")
        let squares = Self.referenceReduce(v.enumerated().map { i, value in
          let m = sums[Self.keptIndex(i, shape, Set(axes))] / count
          return (value - m) * (value - m)
        }, shape, Set(axes), +, 0)
        assertClose(variance(input, alongAxes: axes), Tensor(squares.map { $0 / count }, shape: keptShape), "variance \(axes)")
        assertClose(variance(input, alongAxes: axes, unbiased: true), Tensor(squares.map { $0 / (count - 1) }, shape: keptShape), "unbiased \(axes)")
      }
    }
    XCTAssertEqual(sum(x, alongAxes: [1], keepingDimensions: true).shape, [3, 1, 5])
  }

  static func keptIndex(_ i: Int, _ shape: [Int], _ axes: Set<Int>) -> Int {
    var rest = i, index = [Int](repeating: 0, count: shape.count)
    for a in shape.indices.reversed() { index[a] = rest % shape[a]; rest /= shape[a] }
    var o = 0
    for a in shape.indices where !axes.contains(a) { o = o * shape[a] + index[a] }
    return o
  }

  func testArgmaxFirstOccurrenceInRowMajorOrder() {
    let x = Tensor([1, 5, 5, 2, 9, 0, 3, 3, 3] as [Float], shape: [3, 3])
    XCTAssertEqual(argmax(x, alongAxis: 1), [1, 1, 0])
    XCTAssertEqual(argmax(x, alongAxis: 0), [2, 1, 0])
    // A transposed (non-row-major) view reports indices in row-major order of its own shape.
    XCTAssertEqual(argmax(transpose(x), alongAxis: 0), [1, 1, 0])
  }

  func testSoftmaxAndLogSoftmax() {
    let x = Tensor([1, 2, 3, 1000, 1000, 1000] as [Double], shape: [2, 3])
    let e = [1, 2, 3].map { Foundation.exp(Double($0)) }, total = e.reduce(0, +)
    let expected = e.map { $0 / total } + [1.0 / 3, 1.0 / 3, 1.0 / 3]
    assertClose(softmax(x, alongAxis: 1), Tensor(expected, shape: [2, 3]), relativeTolerance: 1e-12)
    assertClose(logSoftmax(x, alongAxis: -1), Tensor(expected.map { Foundation.log($0) }, shape: [2, 3]), relativeTolerance: 1e-12)
  }
}
