import Reprise
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

  /// Shapes that differ are named in the message.
  func testMismatchedShapesStop() {
    assertStops(withMessageContaining: ["sgdStep", "[2, 3]", "[3, 2]"], in: self) {
      _ = sgdStep(Tensor(zeros: [2, 3]), gradient: Tensor(zeros: [3, 2]), momentumBuffer: nil, learningRate: 0.1, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false)
    }
  }
}
