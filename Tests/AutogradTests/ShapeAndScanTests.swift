import Foundation
import Reprise
import TestSupport
import XCTest

/// Shape composites, `min`, `logSumExp` and `cumulativeSum`: values against reference loops and
/// gradients against central differences in Float64.
final class ShapeAndScanTests: XCTestCase {
  var random = RandomGenerator(seed: 2028)

  func leaf(_ shape: [Int]) -> Variable { randomLeaf(shape, using: &random) }

  func testShapes() {
    let x = leaf([2, 3, 5])
    XCTAssertEqual(unsqueeze(x, axis: 1).shape, [2, 1, 3, 5])
    XCTAssertEqual(unsqueeze(x, axis: -1).shape, [2, 3, 5, 1])
    XCTAssertEqual(squeeze(unsqueeze(x, axis: 0), axis: 0).shape, [2, 3, 5])
    XCTAssertEqual(flatten(x).shape, [30])
    XCTAssertEqual(flatten(x, from: 1).shape, [2, 15])
    XCTAssertEqual(flatten(x, from: 0, to: 1).shape, [6, 5])
    let y = leaf([2, 3, 5])
    let stacked = stack([x, y], alongAxis: 1)
    XCTAssertEqual(stacked.shape, [2, 2, 3, 5])
    XCTAssertEqual(stacked.value[1, 1, 2, 4], y.value[1, 2, 4])
    XCTAssertEqual(stacked.value[0, 0, 1, 3], x.value[0, 1, 3])
    assertGradientsCorrect(at: [x, y], "stack, flatten") { flatten(stack([x, y], alongAxis: -1), from: 1) * 1.5 }
  }

  func testSqueezeOfAWideDimensionStops() {
    assertStops(withMessageContaining: ["squeeze: dimension 1 of [2, 3] has size 3, not 1"], in: self) {
      _ = squeeze(Variable(Tensor(zeros: [2, 3])), axis: 1)
    }
  }

  func testMinimum() {
    let x = Variable(Tensor([3, 1, 2, 1, 5, 0] as [Double], shape: [2, 3]), requiresGrad: true)
    XCTAssertEqual(min(x, alongAxes: [1]).value.scalars(as: Double.self), [1, 0])
    XCTAssertEqual(minWithIndices(x.value, alongAxes: [1]).indices, [1, 2])
    XCTAssertEqual(argmin(x.value, alongAxis: 0), [1, 0, 1])
    let y = leaf([4, 5])
    assertGradientsCorrect(at: [y], "min") { min(y, alongAxes: [0]) }
  }

  func testLogSumExp() {
    let x = Tensor(randomNormal: [3, 4], dtype: .float64, using: &random) * 30
    let y = logSumExp(Variable(x), alongAxes: [1]).value.scalars(as: Double.self)
    let rows = x.scalars(as: Double.self)
    for r in 0..<3 {
      let row = rows[r * 4..<(r + 1) * 4], m = row.max()!
      XCTAssertEqual(y[r], m + Foundation.log(row.map { Foundation.exp($0 - m) }.reduce(0, +)), accuracy: 1e-12)
    }
    let big = Variable(Tensor([1000, 1000] as [Float], shape: [2]))
    XCTAssertEqual(logSumExp(big).value.scalar, 1000 + Foundation.log(2), accuracy: 1e-3)
    let z = leaf([3, 4, 2])
    assertGradientsCorrect(at: [z], "logSumExp") { logSumExp(z, alongAxes: [0, 2], keepingDimensions: true) }
  }

  func testCumulativeSum() {
    let x = Tensor(randomNormal: [3, 5, 2], dtype: .float64, using: &random)
    for axis in 0..<3 {
      let y = cumulativeSum(x, alongAxis: axis)
      for i in 0..<3 { for j in 0..<5 { for k in 0..<2 {
        var index = [i, j, k], expected = 0.0
        for t in 0...index[axis] {
          index[axis] = t
          expected += x[index[0], index[1], index[2]]
        }
        XCTAssertEqual(y[i, j, k], expected, accuracy: 1e-12, "axis \(axis) at \([i, j, k])")
      } } }
    }
    XCTAssertEqual(cumulativeSum(Tensor([1, 2, 3] as [Double], shape: [3]), alongAxis: 0, reverse: true).scalars(as: Double.self), [6, 5, 3])
    let v = leaf([4, 3, 5])
    assertGradientsCorrect(at: [v], "cumulativeSum") { cumulativeSum(v, alongAxis: 1) }
    assertGradientsCorrect(at: [v], "cumulativeSum of a permuted view") { cumulativeSum(transpose(v, 0, 2), alongAxis: -1) }
  }
}
