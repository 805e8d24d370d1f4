import Reprise
import TestSupport
import XCTest

final class CreationTests: XCTestCase {
  func testConstantsAndRanges() {
    XCTAssertEqual(Tensor(zeros: [2, 2]).scalars(as: Float.self), [0, 0, 0, 0])
    XCTAssertEqual(Tensor(ones: [3], dtype: .float64).scalars(as: Double.self), [1, 1, 1])
    XCTAssertEqual(Tensor(repeating: 2.5, shape: [2]).scalars(as: Float.self), [2.5, 2.5])
    XCTAssertEqual(Tensor.arange(0, 5).scalars(as: Float.self), [0, 1, 2, 3, 4])
    XCTAssertEqual(Tensor.arange(1, 0, step: -0.25, dtype: .float64).scalars(as: Double.self), [1, 0.75, 0.5, 0.25])
    XCTAssertEqual(Tensor(3).shape, [])
    XCTAssertEqual(Tensor(3).scalar, 3)
  }

  func testGeneratorStateSavesAndRestores() {
    var g = RandomGenerator(seed: 42)
    _ = g.next()
    let saved = g
    let first = Tensor(randomNormal: [100], using: &g)
    g = saved
    let again = Tensor(randomNormal: [100], using: &g)
    assertBitIdentical(first, again)
    XCTAssertNotEqual(RandomGenerator(seed: 1).state.0, RandomGenerator(seed: 2).state.0)
  }

  func testDistributions() {
    var g = RandomGenerator(seed: 7)
    let n = Tensor(randomNormal: [100_000], mean: 2, standardDeviation: 3, dtype: .float64, using: &g)
    XCTAssertEqual(mean(n).scalar, 2, accuracy: 0.05)
    XCTAssertEqual(variance(n).scalar.squareRoot(), 3, accuracy: 0.05)
    let u = Tensor(randomUniform: [100_000], lower: -1, upper: 3, using: &g)
    XCTAssertGreaterThanOrEqual(-max(u).scalar, -3)
    XCTAssertGreaterThanOrEqual(u.scalars(as: Float.self).min()!, -1)
    XCTAssertEqual(mean(u).scalar, 1, accuracy: 0.03)
    let b = Tensor(randomBernoulli: [100_000], probability: 0.3, using: &g)
    XCTAssertEqual(mean(b).scalar, 0.3, accuracy: 0.01)
    XCTAssertEqual(Set(b.scalars(as: Float.self)), [0, 1])
  }

  func testGlobalGeneratorIsSeedable() {
    RandomGenerator.global = RandomGenerator(seed: 5)
    let a = Tensor(randomUniform: [10])
    RandomGenerator.global = RandomGenerator(seed: 5)
    assertBitIdentical(a, Tensor(randomUniform: [10]))
  }

  func testScalarCountMismatchStops() {
    assertStops(withMessageContaining: ["Tensor: 3 scalars do not fill shape [2, 2]"], in: self) {
      _ = Tensor([1, 2, 3] as [Float], shape: [2, 2])
    }
  }
}
