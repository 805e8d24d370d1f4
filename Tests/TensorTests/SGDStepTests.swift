import Reprise
@testable import TensorModule
import TestSupport
import XCTest

/// The one-pass SGD update against the tensor expressions it replaces.
final class SGDStepTests: XCTestCase {
  /// The update as tensor expressions, PyTorch's rule written out.
  static func composite(
    _ p: Tensor, _ g: Tensor, _ buffer: Tensor?, rate: Double, momentum: Double, dampening: Double, decay: Double, nesterov: Bool
  ) -> (Tensor, Tensor?) {
    var g = g, b: Tensor? = nil
    if decay != 0 { g = g + p * decay }
    if momentum != 0 {
      b = buffer.map { $0 * momentum + g * (1 - dampening) } ?? g
      g = nesterov ? g + b! * momentum : b!
    }
    return (p - g * rate, b)
  }

  /// Bit for bit equal to the expressions over two steps (no buffer, then a buffer), for every
  /// combination of momentum, dampening, Nesterov and weight decay, in Float32 and Float64, with a
  /// gradient in another memory order than the parameter and values that include signed zeros.
  func testEqualsTheExpressionsBitForBit() {
    let settings: [(momentum: Double, dampening: Double, decay: Double, nesterov: Bool)] = [
      (0, 0, 0, false), (0, 0, 1e-4, false), (0.9, 0, 0, false), (0.9, 0.5, 0.01, false), (0.9, 0, 5e-4, true),
    ]
    for dtype in DType.allCases {
      for s in settings {
        var random = RandomGenerator(seed: 5)
        var p = Tensor(randomNormal: [3, 4, 5], dtype: dtype, using: &random)
        p = concatenate([p, Tensor(zeros: [1, 4, 5], dtype: dtype), -Tensor(zeros: [1, 4, 5], dtype: dtype)], alongAxis: 0)
        var (q, buffer, expectedBuffer): (Tensor, Tensor?, Tensor?) = (p, nil, nil)
        for step in 0..<2 {
          let g = permute(Tensor(randomNormal: [4, 5, 5], dtype: dtype, using: &random), [2, 0, 1])
          let (value, b) = sgdStep(
            q, gradient: g, momentumBuffer: buffer, learningRate: 0.1, momentum: s.momentum, dampening: s.dampening,
            weightDecay: s.decay, nesterov: s.nesterov)
          let (expected, eb) = Self.composite(p, g, expectedBuffer, rate: 0.1, momentum: s.momentum, dampening: s.dampening, decay: s.decay, nesterov: s.nesterov)
          let message = "\(dtype) step \(step) \(s)"
          XCTAssertEqual(value.scalars(as: Double.self).map(\.bitPattern), expected.scalars(as: Double.self).map(\.bitPattern), message)
          XCTAssertEqual(b?.scalars(as: Double.self).map(\.bitPattern), eb?.scalars(as: Double.self).map(\.bitPattern), message)
          (q, buffer, p, expectedBuffer) = (value, b, expected, eb)
        }
      }
    }
  }

  /// In place where nothing else holds the value and the buffer: the bits of the step into new
  /// tensors, written over the same memory (the buffer's from the second step, once it exists); a
  /// value another tensor shares is left as it was and the result goes to new memory.
  func testInPlaceStepEqualsTheStepAndReusesOwnedMemory() {
    func address(_ t: Tensor) -> UnsafeRawPointer {
      t.dtype == .float32 ? UnsafeRawPointer(t.base(Float.self)) : UnsafeRawPointer(t.base(Double.self))
    }
    for dtype in DType.allCases {
      var random = RandomGenerator(seed: 6)
      var value = Tensor(randomNormal: [4, 5], dtype: dtype, using: &random)
      var (expected, expectedBuffer, buffer): (Tensor, Tensor?, Tensor?) = (value.copied(), nil, nil)
      for step in 0..<3 {
        let g = permute(Tensor(randomNormal: [5, 4], dtype: dtype, using: &random), [1, 0])
        (expected, expectedBuffer) = sgdStep(
          expected, gradient: g, momentumBuffer: expectedBuffer, learningRate: 0.1, momentum: 0.9, dampening: 0.1, weightDecay: 1e-3,
          nesterov: false)
        let (place, bufferPlace) = (address(value), buffer.map(address))
        sgdStep(
          updating: &value, momentumBuffer: &buffer, gradient: g, learningRate: 0.1, momentum: 0.9, dampening: 0.1, weightDecay: 1e-3,
          nesterov: false)
        XCTAssertEqual(address(value), place, "\(dtype) step \(step): the value in place")
        if let bufferPlace { XCTAssertEqual(address(buffer!), bufferPlace, "\(dtype) step \(step): the buffer in place") }
        assertBitIdentical(value, expected, "\(dtype) step \(step)")
        assertBitIdentical(buffer, expectedBuffer, "\(dtype) step \(step) buffer")
      }
      let shared = value, before = value.copied(), g = Tensor(randomNormal: [4, 5], dtype: dtype, using: &random)
      sgdStep(updating: &value, momentumBuffer: &buffer, gradient: g, learningRate: 0.1, momentum: 0.9, dampening: 0.1, weightDecay: 0, nesterov: false)
      XCTAssertNotEqual(address(value), address(shared), "\(dtype): a shared value is not written over")
      assertBitIdentical(shared, before, "\(dtype): the shared value")
    }
  }

  /// Shapes that differ are named in the message.
  func testMismatchedShapesStop() {
    assertStops(withMessageContaining: ["sgdStep", "[2, 3]", "[3, 2]"], in: self) {
      _ = sgdStep(Tensor(zeros: [2, 3]), gradient: Tensor(zeros: [3, 2]), momentumBuffer: nil, learningRate: 0.1, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false)
    }
  }
}
