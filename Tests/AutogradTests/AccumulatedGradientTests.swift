import Reprise
import TestSupport
import XCTest

/// A residual block's input: its first operation's input gradient added in place to the
/// shortcut's, which arrived first (`AccumulatedGradient`).
final class AccumulatedGradientTests: XCTestCase {
  /// `relu(first(x) * 2 + x)` for x = relu(p): the shortcut's gradient of x arrives first, and the
  /// convolution's, the batch normalisation's or the pre-activation unit's input gradient is added
  /// to it where the kernel writes it. The gradients equal, bit for bit, those of the same block
  /// whose input is a leaf (whose gradient the tape adds as a tensor), in Float32 (Winograd's
  /// path for the convolutions, which adds in its output transform) and Float64 (the kernels'
  /// other paths).
  func testFirstOperationAddsToTheShortcutsGradient() {
    for dtype in DType.allCases {
      var random = RandomGenerator(seed: 44)
      let shape = [2, 8, 8, 9]
      let p = Variable(channelMajor(Tensor(randomNormal: shape, dtype: dtype, using: &random)), requiresGrad: true)
      let seed = channelMajor(Tensor(randomNormal: shape, dtype: dtype, using: &random))
      let w = Variable(Tensor(randomNormal: [8, 8, 3, 3], standardDeviation: 0.2, dtype: dtype, using: &random), requiresGrad: true)
      let gamma = Variable(Tensor(randomNormal: [8], dtype: dtype, using: &random), requiresGrad: true)
      let beta = Variable(Tensor(randomNormal: [8], dtype: dtype, using: &random), requiresGrad: true)
      let firsts: [(String, (Variable) -> Variable)] = [
        ("conv2d", { conv2d($0, w, padding: 1) }),
        ("batchNorm", { batchNorm($0, weight: gamma, bias: beta).output }),
        ("batchNormReLUConv2d", { batchNormReLUConv2d($0, normWeight: gamma, normBias: beta, convWeight: w, padding: 1).output }),
      ]
      for (name, first) in firsts {
        let parameters = [w, gamma, beta]
        for v in parameters + [p] { v.grad = nil }
        let x = relu(p)
        relu(first(x) * 2 + x).backward(seed: seed)
        let fused = [p.grad] + parameters.map(\.grad)

        for v in parameters { v.grad = nil }
        let leaf = Variable(relu(p.value), requiresGrad: true)
        relu(first(leaf) * 2 + leaf).backward(seed: seed)
        let p2 = Variable(p.value, requiresGrad: true)
        relu(p2).backward(seed: leaf.grad!)
        let apart = [p2.grad] + parameters.map(\.grad)
        for (i, (a, b)) in zip(fused, apart).enumerated() {
          assertBitIdentical(a, b, "\(name), \(dtype): gradient \(i) (p, conv weight, norm weight, norm bias)")
        }
      }
    }
  }
}
