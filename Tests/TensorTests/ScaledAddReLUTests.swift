import TestSupport
import XCTest

@testable import TensorModule

/// `addReLU(_:scaledBy:_:)` and its gradients in one pass are `addReLU(a * scale, b)` and the
/// composition's gradients bit for bit, in both dtypes, on the layouts the one-pass kernels take
/// (row-major and channel-major maps, planes of lengths that are not multiples of 8) and on those
/// they leave to the composition.
final class ScaledAddReLUTests: XCTestCase {
  /// The composition's gradients: the ReLU's, then the product's, the scale's summed over its
  /// broadcast axes as the tape's `unbroadcast` sums it.
  func composedGradients(_ gradient: Tensor, _ y: Tensor, _ a: Tensor, _ scale: Tensor) -> (a: Tensor, scale: Tensor, b: Tensor) {
    let g = reluBackward(gradient, output: y)
    let axes = a.shape.indices.filter { scale.shape[$0] == 1 && a.shape[$0] != 1 }
    return (g * scale, reshape(sum(g * a, alongAxes: axes, keepingDimensions: true), to: scale.shape), g)
  }

  func assertEqualsComposition(
    _ a: Tensor, _ scale: Tensor, _ b: Tensor, _ gradient: Tensor, _ name: String, onePass: Bool = true, file: StaticString = #filePath,
    line: UInt = #line
  ) {
    let y = addReLU(a, scaledBy: scale, b)
    assertBitIdentical(y, addReLU(a * scale, b), "\(name): value", file: file, line: line)
    let fused = addReLUBackward(gradient, a, scaledBy: scale, b), composed = composedGradients(gradient, y, a, scale)
    if onePass {
      XCTAssertEqual(y.strides, a.strides, "\(name): the result keeps the layout of a", file: file, line: line)
      func order(_ t: Tensor) -> [Int] { Shape.memoryOrder(t.shape, t.strides).filter { t.shape[$0] != 1 } }
      XCTAssertEqual(order(fused.scale), order(composed.scale), "\(name): the scale's gradient is laid out as a sum", file: file, line: line)
    }
    assertBitIdentical(fused.a, composed.a, "\(name): gradient of a", file: file, line: line)
    assertBitIdentical(fused.scale, composed.scale, "\(name): gradient of the scale", file: file, line: line)
    assertBitIdentical(fused.b, composed.b, "\(name): gradient of b", file: file, line: line)
  }

  func testOnePassEqualsComposition() {
    var random = RandomGenerator(seed: 77)
    for dtype in [DType.float32, .float64] {
      for (n, c, h, w) in [(3, 5, 7, 9), (2, 4, 8, 8), (2, 3, 1, 1), (2, 6, 33, 33)] {
        func normal(_ shape: [Int]) -> Tensor { Tensor(randomNormal: shape, dtype: dtype, using: &random) }
        let scale = sigmoid(normal([n, c, 1, 1]))
        // Row-major maps, and channel-major ones as convolutions write them.
        let rowMajor = normal([n, c, h, w])
        let channelMajor = conv2d(normal([n, c, h, w]), normal([c, c, 1, 1]))
        for (a, layout) in [(rowMajor, "row-major"), (channelMajor, "channel-major")] {
          let b = normal(a.shape).copied(strides: a.strides), gradient = normal(a.shape).copied(strides: a.strides)
          assertEqualsComposition(a, scale, b, gradient, "\(dtype) \(layout) \([n, c, h, w])")
        }
        // What the one-pass kernels do not take: a scale per channel only, and operands of
        // different layouts.
        assertEqualsComposition(rowMajor, sigmoid(normal([1, c, 1, 1])), normal([n, c, h, w]), normal([n, c, h, w]), "\(dtype) per channel", onePass: false)
        assertEqualsComposition(channelMajor, scale, normal([n, c, h, w]), normal([n, c, h, w]), "\(dtype) mixed layouts", onePass: false)
      }
    }
  }
}
