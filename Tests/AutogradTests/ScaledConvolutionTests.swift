import Reprise
import TestSupport
import XCTest

/// The convolution of an input scaled per plane (a channel dropout fused into the convolution that
/// reads it): correct gradients, and the bits of the composition `conv2d(x * mask, w)` on every
/// path, including Winograd's (Float32, 3x3, 8 or more channels) and into a feature buffer's pieces.
final class ScaledConvolutionTests: XCTestCase {
  var random = RandomGenerator(seed: 23)

  func testGradientsAreCorrect() {
    let x = randomLeaf([2, 3, 5, 4], using: &random), w = randomLeaf([4, 3, 3, 3], using: &random)
    for factors in [[2, 3, 1, 1], [1, 3, 1, 1], [2, 1, 1, 1]] {
      let mask = Tensor(randomNormal: factors, dtype: .float64, using: &random)
      assertGradientsCorrect(at: [x, w], "factors \(factors)") {
        let y = conv2d(x, w, scalingPlanes: mask, stride: 1, padding: 1)
        return sum(y * y)
      }
    }
  }

  /// A mask of 0 and 1 / keep per plane, as Dropout2d draws it.
  func mask(_ shape: [Int], dtype: DType) -> Tensor {
    Tensor(randomBernoulli: shape, probability: 0.75, dtype: dtype, using: &random) * (1 / 0.75)
  }

  /// The fused convolution of a plain input against the composition, forward and both gradients.
  func testEqualsTheCompositionBitForBit() {
    // 8 -> 9 channels takes Winograd in Float32: on 9x10 planes in chunks of one image, on 8x8
    // planes of a batch of 9 in chunks of two (the gradients' F(4x4, 3x3) pairing the images) and
    // an odd last one; 2 channels take the shifted grid and Float64 the composition.
    for (batch, channels, height, width, dtype) in [
      (3, 8, 9, 10, DType.float32), (9, 8, 8, 8, .float32), (3, 2, 9, 10, .float32), (3, 8, 9, 10, .float64),
    ] {
      let x = Variable(Tensor(randomNormal: [batch, channels, height, width], dtype: dtype, using: &random), requiresGrad: true)
      let w = Variable(Tensor(randomNormal: [9, channels, 3, 3], dtype: dtype, using: &random), requiresGrad: true)
      let m = mask([batch, channels, 1, 1], dtype: dtype)
      let r = Tensor(randomNormal: [batch, 9, height, width], dtype: dtype, using: &random)
      func run(_ body: () -> Variable) -> [Tensor?] {
        x.grad = nil
        w.grad = nil
        let y = body()
        sum(y * Variable(r)).backward()
        return [y.value, x.grad, w.grad]
      }
      let fused = run { conv2d(x, w, scalingPlanes: m, padding: 1) }
      let composed = run { conv2d(x * Variable(m), w, padding: 1) }
      for (i, name) in ["output", "input gradient", "weight gradient"].enumerated() {
        assertBitIdentical(fused[i], composed[i], "\(name), \(x.shape), \(dtype)")
      }
    }
  }

  /// Overlapping windows of a feature buffer: the later convolution's gradient reaches the pieces
  /// first and is written there, the earlier one's is added to it, and a plain reader's through the
  /// window's own gradient; all with the bits of the composition.
  func testWindowsOfFeatureBuffersGetTheCompositionsGradients() {
    let a = Variable(Tensor(randomNormal: [3, 4, 8, 8], using: &random), requiresGrad: true)
    let b = Variable(Tensor(randomNormal: [3, 4, 8, 8], using: &random), requiresGrad: true)
    let c = Variable(Tensor(randomNormal: [3, 4, 8, 8], using: &random), requiresGrad: true)
    let w = Variable(Tensor(randomNormal: [8, 8, 3, 3], using: &random), requiresGrad: true)
    let v = Variable(Tensor(randomNormal: [9, 8, 3, 3], using: &random), requiresGrad: true)
    let m = mask([3, 8, 1, 1], dtype: .float32)
    func run(_ convolve: (Variable, Variable) -> Variable) -> [Tensor?] {
      for leaf in [a, b, c, w, v] { leaf.grad = nil }
      let buffer = FeatureBuffer(capacity: 12, first: a * 2)
      buffer.append(tanh(b))
      buffer.append(c * 3)
      let late = buffer.window(4..<12), y = convolve(late, w), z = convolve(buffer.window(0..<8), v)
      (sum(y * y) + sum(z * z) + sum(late * late)).backward()
      return [y.value, z.value, a.grad, b.grad, c.grad, w.grad, v.grad]
    }
    let fused = run { conv2d($0, $1, scalingPlanes: m, padding: 1) }
    let composed = run { conv2d($0 * Variable(m), $1, padding: 1) }
    for (i, name) in [
      "first output", "second output", "first piece's gradient", "second piece's", "third piece's", "weight gradient",
      "second weight gradient",
    ].enumerated() {
      assertBitIdentical(fused[i], composed[i], name)
    }
  }
}
