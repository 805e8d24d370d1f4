import Foundation
import Reprise
import TestSupport
import XCTest

/// The element-wise primitives and activations: values against scalar reference formulas, and
/// gradients against central differences in Float64 on odd shapes.
final class ActivationTests: XCTestCase {
  var random = RandomGenerator(seed: 2027)

  func leaf(_ shape: [Int], scale: Double = 1) -> Variable { randomLeaf(shape, using: &random, scale: scale) }

  /// Asserts that `f` applied to a Float64 tensor gives `reference` of each element to 1e-12.
  func assertValues(
    _ name: String, _ f: (Variable) -> Variable, _ reference: (Double) -> Double, scale: Double = 2,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    let x = Tensor(randomNormal: [4, 7], dtype: .float64, using: &random) * scale
    let y = f(Variable(x)).value.scalars(as: Double.self)
    for (i, v) in x.scalars(as: Double.self).enumerated() {
      XCTAssertEqual(y[i], reference(v), accuracy: 1e-12 * Swift.max(1, Swift.abs(reference(v))), "\(name)(\(v))", file: file, line: line)
    }
  }

  func testValuesAgainstScalarFormulas() {
    assertValues("tanh", tanh, Foundation.tanh)
    assertValues("erf", erf, Foundation.erf)
    assertValues("sin", sin, Foundation.sin, scale: 5)
    assertValues("cos", cos, Foundation.cos, scale: 5)
    assertValues("log1p", { log1p(abs($0)) }, { Foundation.log1p(Swift.abs($0)) })
    assertValues("expm1", expm1, Foundation.expm1)
    assertValues("softplus", { softplus($0) }, { $0 > 20 ? $0 : Foundation.log1p(Foundation.exp($0)) }, scale: 15)
    assertValues("leakyReLU", { leakyReLU($0, negativeSlope: 0.2) }, { $0 > 0 ? $0 : 0.2 * $0 })
    assertValues("elu", { elu($0, alpha: 1.5) }, { $0 > 0 ? $0 : 1.5 * Foundation.expm1($0) })
    assertValues("silu", silu, { $0 / (1 + Foundation.exp(-$0)) })
    assertValues("gelu", { gelu($0) }, { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) })
    assertValues("gelu tanh", { gelu($0, approximation: .tanh) }) { x in
      0.5 * x * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
    }
  }

  func testGradients() {
    let x = leaf([3, 5, 7]), wide = leaf([3, 5, 7], scale: 12)
    let p = Variable(abs(Tensor(randomNormal: [5, 3], dtype: .float64, using: &random)) + 0.1, requiresGrad: true)
    assertGradientsCorrect(at: [x], "tanh") { tanh(x) }
    assertGradientsCorrect(at: [x], "erf") { erf(x) }
    assertGradientsCorrect(at: [wide], "sin") { sin(wide) }
    assertGradientsCorrect(at: [wide], "cos") { cos(wide) }
    assertGradientsCorrect(at: [p], "log1p") { log1p(p) }
    assertGradientsCorrect(at: [x], "expm1") { expm1(x) }
    assertGradientsCorrect(at: [wide], "softplus, both sides of the threshold") { softplus(wide, threshold: 5) }
    assertGradientsCorrect(at: [x], "leakyReLU") { leakyReLU(x, negativeSlope: 0.1) }
    assertGradientsCorrect(at: [wide], "elu") { elu(wide, alpha: 0.7) }
    assertGradientsCorrect(at: [x], "silu") { silu(x) }
    assertGradientsCorrect(at: [x], "gelu") { gelu(x) }
    assertGradientsCorrect(at: [x], "gelu tanh") { gelu(x, approximation: .tanh) }
  }

  /// Far outside the range where e^x is finite, the functions built from it stay finite.
  func testExtremeInputsStayFinite() {
    let x = Variable(Tensor([-1000, -30, 0, 30, 1000], shape: [5]), requiresGrad: true)
    for (name, f) in [("softplus", { softplus($0) }), ("elu", { elu($0) }), ("silu", silu), ("gelu", { gelu($0) })] as [(String, (Variable) -> Variable)] {
      x.grad = nil
      let y = f(x)
      XCTAssert(y.value.isFinite, "\(name): \(y.value)")
      sum(y).backward()
      XCTAssert(x.grad!.isFinite, "\(name) gradient: \(x.grad!)")
    }
  }

  func testScalarOperatorsInBothOrders() {
    let t = Tensor([1, 2, 4] as [Double], shape: [3])
    XCTAssertEqual((t - 1.0).scalars(as: Double.self), [0, 1, 3])
    XCTAssertEqual((t / 2.0).scalars(as: Double.self), [0.5, 1, 2])
    XCTAssertEqual((2.0 * t).scalars(as: Double.self), [2, 4, 8])
    XCTAssertEqual((1.0 + t).scalars(as: Double.self), [2, 3, 5])
    XCTAssertEqual((1.0 - t).scalars(as: Double.self), [0, -1, -3])
    XCTAssertEqual((1.0 / t).scalars(as: Double.self), [1, 0.5, 0.25])
    let x = Variable(abs(Tensor(randomNormal: [2, 3], dtype: .float64, using: &random)) + 0.5, requiresGrad: true)
    assertGradientsCorrect(at: [x], "constant over a variable") { 1 / x + 2 / (x * x) - 3 }
  }
}

/// A pullback that breaks the contract of `recordOperation` stops with a message naming the
/// operation and the input, instead of dropping a gradient or failing later in an optimiser.
final class PullbackContractTests: XCTestCase {
  let x = Variable(Tensor(ones: [2, 3]), requiresGrad: true), y = Variable(Tensor(ones: [3]), requiresGrad: true)

  func run(_ pullback: @escaping (Tensor) -> [Tensor?]) {
    sum(recordOperation("custom", x.value + y.value, inputs: [x, y], pullback: pullback)).backward()
  }

  func testTooFewGradients() {
    assertStops(withMessageContaining: ["custom: the pullback returned 1 gradients for 2 inputs"], in: self) { run { [$0] } }
  }

  func testTooManyGradients() {
    assertStops(withMessageContaining: ["custom: the pullback returned 3 gradients for 2 inputs"], in: self) { run { [$0, $0, $0] } }
  }

  func testAGradientOfAnotherDtype() {
    assertStops(withMessageContaining: ["custom: the pullback's gradient for input 1 is float64, the input is float32"], in: self) {
      run { [$0, $0.converted(to: .float64)] }
    }
  }

  func testAGradientOfAnotherShape() {
    assertStops(withMessageContaining: ["custom: the pullback's gradient for input 0 has shape [3, 2]", "input's shape [2, 3]"], in: self) {
      run { _ in [Tensor(ones: [3, 2]), nil] }
    }
  }

  func testBroadcastAndNilGradientsAreAccepted() {
    run { [$0, $0] }
    XCTAssertEqual(y.grad?.scalars(as: Float.self), [2, 2, 2])
  }
}
