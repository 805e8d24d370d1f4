import Reprise
import TestSupport
import XCTest

/// A residual block's input: its first operation's input gradient added in place to the
/// shortcut's, which arrived first (`AccumulatedGradient`).
final class AccumulatedGradientTests: XCTestCase {
  /// `relu(first(x) * 2 + x)` for x = relu(p): the shortcut's gradient of x arrives first, and the
  /// convolution's, the batch normalisation's or the pre-activation unit's input gradient is added
  /// to it where the kernel writes it. The gradients equal, bit for bit, the sum `shortcut + first`
  /// of the two gradients taken apart (the block read through two leaves, one for each path), in
  /// Float32 (Winograd's path for the convolutions, which adds in its output transform) and
  /// Float64 (the kernels' other paths).
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
        let (firstInput, shortcut) = (Variable(relu(p.value), requiresGrad: true), Variable(relu(p.value), requiresGrad: true))
        relu(first(firstInput) * 2 + shortcut).backward(seed: seed)
        let p2 = Variable(p.value, requiresGrad: true)
        relu(p2).backward(seed: shortcut.grad! + firstInput.grad!)
        let apart = [p2.grad] + parameters.map(\.grad)
        for (i, (a, b)) in zip(fused, apart).enumerated() {
          assertBitIdentical(a, b, "\(name), \(dtype): gradient \(i) (p, conv weight, norm weight, norm bias)")
        }
      }
    }
  }

  /// A leaf read by a convolution and a shortcut takes the convolution's input gradient where the
  /// Winograd output transform writes it, as a recorded value does: a checkpoint region's inputs
  /// are such leaves in its replay (rule 8). The backward pass's peak is then that of the same
  /// block on a recorded input, where the tape adding a separate input gradient would hold one
  /// more map; and the leaf's gradient is that of the recorded input, bit for bit.
  func testALeafTakesItsFirstOperationsGradientInPlace() {
    var random = RandomGenerator(seed: 45)
    let shape = [4, 16, 32, 32]  // 256 KiB a map: mapped buffers, charged exactly
    let p = Variable(channelMajor(Tensor(randomNormal: shape, using: &random)), requiresGrad: true)
    let seed = channelMajor(Tensor(randomNormal: shape, using: &random))
    let w = Variable(Tensor(randomNormal: [16, 16, 3, 3], standardDeviation: 0.1, using: &random), requiresGrad: true)
    let block = { (x: Variable) in relu(conv2d(x, w, padding: 1) * 2 + x) }
    /// The most bytes the backward pass of `block(x)` holds beyond what was live before it.
    func backwardPeak(_ x: Variable) -> Int {
      let y = block(x)
      let before = Allocator.liveBytes
      Allocator.resetPeak()
      y.backward(seed: seed)
      return Allocator.peakBytes - before
    }
    let recorded = relu(p)
    let recordedPeak = backwardPeak(recorded)
    let fromRecorded = p.grad!
    w.grad = nil
    let leaf = Variable(relu(p.value), requiresGrad: true)
    let leafPeak = backwardPeak(leaf)
    XCTAssertLessThanOrEqual(leafPeak, recordedPeak, "the leaf's backward pass held \(leafPeak - recordedPeak) bytes more")
    let p2 = Variable(p.value, requiresGrad: true)
    relu(p2).backward(seed: leaf.grad!)
    assertBitIdentical(p2.grad!, fromRecorded, "the gradient through the leaf")
  }
}
