import Reprise
import TestSupport
import XCTest

/// Every differentiable operation, primitive or composite, checked numerically in Float64 against a
/// random output gradient, on odd shapes, with broadcasting, strides, padding, dilation and groups.
final class PrimitiveGradientTests: XCTestCase {
  var random = RandomGenerator(seed: 2024)

  func leaf(_ shape: [Int], scale: Double = 1) -> Variable { randomLeaf(shape, using: &random, scale: scale) }

  /// A leaf with entries bounded away from zero (for log, sqrt, reciprocal and powers).
  func positiveLeaf(_ shape: [Int]) -> Variable {
    Variable(abs(Tensor(randomNormal: shape, dtype: .float64, using: &random)) + 0.5, requiresGrad: true)
  }

  func testArithmetic() {
    let a = leaf([2, 3, 4]), b = leaf([3, 1]), p = positiveLeaf([3, 1])
    assertGradientsCorrect(at: [a, b], "add") { add(a, b) }
    assertGradientsCorrect(at: [a, b], "addReLU") { addReLU(a, b) }
    assertGradientsCorrect(at: [a, b], "multiply") { multiply(a, b) }
    assertGradientsCorrect(at: [a], "negate") { negate(a) }
    assertGradientsCorrect(at: [p], "reciprocal") { reciprocal(p) }
    assertGradientsCorrect(at: [a], "pow 3") { pow(a, 3) }
    assertGradientsCorrect(at: [p], "pow 0.5") { pow(p, 0.5) }
    assertGradientsCorrect(at: [a, p], "subtract, divide") { (a - p) / p }
    assertGradientsCorrect(at: [a], "scalar forms") { 2 - (a * 3 + 1) / 4 }
    let c = leaf([2, 3, 4])
    assertGradientsCorrect(at: [a, c], "select") { select(a.value .> c.value, a, c) }
    let maps = leaf([2, 3, 4, 5]), scale = leaf([2, 3, 1, 1]), residual = leaf([2, 3, 4, 5])
    assertGradientsCorrect(at: [maps, scale, residual], "addReLU scaled") { addReLU(maps, scaledBy: scale, residual) }
    let perChannel = leaf([1, 3, 1, 1]), rows = leaf([3, 1, 5])
    assertGradientsCorrect(at: [maps, perChannel, rows], "addReLU scaled, broadcast") { addReLU(maps, scaledBy: perChannel, rows) }
  }

  func testUnary() {
    let x = leaf([3, 5]), p = positiveLeaf([4, 3])
    assertGradientsCorrect(at: [x], "exp") { exp(x) }
    assertGradientsCorrect(at: [p], "log") { log(p) }
    assertGradientsCorrect(at: [p], "sqrt") { sqrt(p) }
    assertGradientsCorrect(at: [x], "relu") { relu(x) }
    assertGradientsCorrect(at: [x], "sigmoid") { sigmoid(x) }
    assertGradientsCorrect(at: [x], "tanh") { tanh(x) }
    assertGradientsCorrect(at: [x], "abs") { abs(x) }
    let y = leaf([3, 5], scale: 4)
    assertGradientsCorrect(at: [y], "relu6") { relu6(y * 2) }
    assertGradientsCorrect(at: [y], "clamp") { clamp(y, min: -1, max: 2) }
    let z = leaf([3, 5])
    assertGradientsCorrect(at: [x, z], "maximum") { maximum(x, z) }
    assertGradientsCorrect(at: [x, z], "minimum") { minimum(x, z) }
  }

  func testReductions() {
    let x = leaf([3, 4, 5])
    for axes in [[0], [1], [2], [0, 2], [1, 2], [0, 1, 2]] {
      assertGradientsCorrect(at: [x], "sum \(axes)") { sum(x, alongAxes: axes) }
      assertGradientsCorrect(at: [x], "sum keeping \(axes)") { sum(x, alongAxes: axes, keepingDimensions: true) }
      assertGradientsCorrect(at: [x], "max \(axes)") { max(x, alongAxes: axes) }
      assertGradientsCorrect(at: [x], "mean \(axes)") { mean(x, alongAxes: axes, keepingDimensions: true) }
      assertGradientsCorrect(at: [x], "variance \(axes)") { variance(x, alongAxes: axes, unbiased: true) }
    }
    assertGradientsCorrect(at: [x], "max of a permuted view") { max(permute(x, [2, 0, 1]), alongAxes: [0]) }
    assertGradientsCorrect(at: [x], "softmax") { softmax(x, alongAxis: 1) }
    assertGradientsCorrect(at: [x], "logSoftmax") { logSoftmax(x, alongAxis: -1) }
  }

  func testMovement() {
    let x = leaf([2, 3, 4]), y = leaf([2, 5, 4])
    assertGradientsCorrect(at: [x], "reshape") { reshape(x, to: [4, -1]) }
    let weights = Variable(Tensor(randomNormal: [4, 2, 3], dtype: .float64, using: &random))
    assertGradientsCorrect(at: [x], "permute") { permute(x, [2, 0, 1]) * weights }
    assertGradientsCorrect(at: [x], "transpose") { transpose(x, 0, 2) }
    assertGradientsCorrect(at: [x], "broadcast") { broadcast(x, to: [3, 2, 3, 4]) }
    assertGradientsCorrect(at: [x], "slice") { slice(x, 1..<3, alongAxis: 2) }
    assertGradientsCorrect(at: [x], "pad") { pad(x, [(0, 1), (2, 0), (1, 1)], value: 3) }
    assertGradientsCorrect(at: [x, y], "concatenate") { concatenate([x, y, x], alongAxis: 1) }
    assertGradientsCorrect(at: [y], "split") {
      let parts = split(y, sizes: [2, 0, 3], alongAxis: 1)
      return parts[0] * 2 + slice(parts[2], 1..<3, alongAxis: 1)
    }
  }

  func testMatMul() {
    let a = leaf([2, 1, 3, 4]), b = leaf([3, 4, 5]), c = leaf([5, 4])
    assertGradientsCorrect(at: [a, b], "batched, broadcast") { matmul(a, b) }
    assertGradientsCorrect(at: [a, c], "transposed view") { matmul(a, transpose(c)) }
  }

  func testConvolution() {
    let configurations: [(x: [Int], w: [Int], stride: IntOrPair, padding: IntOrPair, dilation: IntOrPair, groups: Int)] = [
      ([2, 3, 5, 4], [4, 3, 3, 3], 1, 1, 1, 1),
      ([1, 2, 7, 6], [3, 2, 3, 2], [2, 1], [1, 0], 1, 1),
      ([2, 4, 6, 6], [6, 2, 3, 3], 2, 2, 2, 2),
      ([2, 3, 5, 5], [3, 1, 3, 3], 1, 1, 1, 3),  // depthwise
      ([2, 4, 5, 3], [6, 2, 5, 1], 1, [2, 0], 1, 2),
      ([3, 5, 4, 4], [2, 5, 1, 1], 1, 0, 1, 1),  // pointwise: the direct GEMM path
      ([2, 4, 5, 5], [4, 2, 1, 1], 2, 0, 1, 2),
      ([2, 8, 4, 3], [4, 8, 3, 3], 1, [1, 2], [1, 2], 1),  // the shifted-GEMM path
    ]
    for c in configurations {
      let x = leaf(c.x), w = leaf(c.w)
      assertGradientsCorrect(at: [x, w], "conv2d \(c)") {
        conv2d(x, w, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups)
      }
    }
    // A channel slice of a channel-major feature map (the dense-block layout) as the input.
    let x = leaf([2, 3, 4, 4]), w0 = leaf([6, 3, 3, 3]), w1 = leaf([2, 4, 1, 1])
    assertGradientsCorrect(at: [x, w0, w1], "conv of a channel slice") {
      conv2d(slice(conv2d(x, w0, padding: 1), 1..<5, alongAxis: 1), w1)
    }
  }

  func testPooling() {
    let x = leaf([2, 3, 5, 6])
    assertGradientsCorrect(at: [x], "maxPool2d") { maxPool2d(x, kernelSize: 3, stride: 2, padding: 1) }
    assertGradientsCorrect(at: [x], "maxPool2d 2x2") { maxPool2d(x, kernelSize: 2) }
    assertGradientsCorrect(at: [x], "avgPool2d") { avgPool2d(x, kernelSize: 3, stride: [2, 1], padding: 1) }
    assertGradientsCorrect(at: [x], "avgPool2d excluding padding") {
      avgPool2d(x, kernelSize: 3, stride: 2, padding: 1, countingPadding: false)
    }
    assertGradientsCorrect(at: [x], "global average") { mean(x, alongAxes: [2, 3]) }
  }

  func testBatchNorm() {
    let x = leaf([3, 4, 3, 2], scale: 2), w = leaf([4]), b = leaf([4])
    assertGradientsCorrect(at: [x, w, b], "batchNorm") { batchNorm(x, weight: w, bias: b).output }
    assertGradientsCorrect(at: [x], "batchNorm without affine") { batchNorm(x, weight: nil, bias: nil).output }
  }

  /// With a residual sum, and a ReLU of it: gradients against central differences, and the values
  /// and gradients of the composition with `addReLU` (or `+`) bit for bit, the residual's gradient
  /// included, whether the residual is a leaf or the input itself (a block's identity shortcut,
  /// whose two gradients the tape adds).
  func testBatchNormAddingResidual() {
    let x = leaf([3, 4, 3, 2], scale: 2), r = leaf([3, 4, 3, 2]), w = leaf([4]), b = leaf([4])
    for relu in [false, true] {
      assertGradientsCorrect(at: [x, r, w, b], "batchNorm adding, ReLU \(relu)") {
        batchNorm(x, weight: w, bias: b, adding: r, applyingReLU: relu).output
      }
      for residual in [r, x] {
        var results: [(Tensor, [Tensor?])] = []
        for fused in [true, false] {
          for v in [x, r, w, b] { v.grad = nil }
          let y =
            fused
            ? batchNorm(x, weight: w, bias: b, adding: residual, applyingReLU: relu).output
            : relu ? addReLU(batchNorm(x, weight: w, bias: b).output, residual) : batchNorm(x, weight: w, bias: b).output + residual
          y.backward(seed: x.value * 3 - 1)
          results.append((y.value, [x, r, w, b].map(\.grad)))
        }
        let name = "ReLU \(relu), residual \(residual === x ? "the input" : "a leaf")"
        assertBitIdentical(results[0].0, results[1].0, "\(name): value")
        for (i, (a, c)) in zip(results[0].1, results[1].1).enumerated() { assertBitIdentical(a, c, "\(name): gradient of input \(i)") }
      }
    }
  }

  /// The fused batch-norm primitive computes what its composite definition computes, forward and
  /// backward.
  func testBatchNormEqualsItsComposite() {
    let x = leaf([3, 4, 3, 2], scale: 2), w = leaf([4]), b = leaf([4])
    let dy = Tensor(randomNormal: [3, 4, 3, 2], dtype: .float64, using: &random)
    func composite() -> Variable {
      let m = mean(x, alongAxes: [0, 2, 3], keepingDimensions: true)
      let v = variance(x, alongAxes: [0, 2, 3], keepingDimensions: true)
      return (x - m) / sqrt(v + 1e-5) * reshape(w, to: [1, 4, 1, 1]) + reshape(b, to: [1, 4, 1, 1])
    }
    let expected = composite()
    expected.backward(seed: dy)
    let grads = [x, w, b].map { $0.grad! }
    for v in [x, w, b] { v.grad = nil }
    let fused = batchNorm(x, weight: w, bias: b).output
    fused.backward(seed: dy)
    assertClose(fused.value, expected.value, relativeTolerance: 1e-10, absoluteTolerance: 1e-12)
    for (v, g) in zip([x, w, b], grads) { assertClose(v.grad!, g, relativeTolerance: 1e-9, absoluteTolerance: 1e-12) }
  }

  /// Scaled by an excitation of its own plane means, plus a residual, then a ReLU: gradients
  /// against central differences, and the value and gradients of the composition (`batchNorm`,
  /// `mean`, the excitation, `addReLU(_:scaledBy:_:)`) bit for bit, the excitation's weights
  /// included, for row-major and channel-major maps (planes of 6, whose vectors straddle planes in a
  /// channel-major row), with the residual a leaf or the input itself, and a residual laid out
  /// otherwise than the input (the composition's path).
  func testBatchNormExcitation() {
    let x = leaf([3, 4, 3, 2], scale: 2), r = leaf([3, 4, 3, 2]), w = leaf([4]), b = leaf([4]), w1 = leaf([2, 4]), w2 = leaf([4, 2])
    let excitation = { (m: Variable) in reshape(sigmoid(linear(relu(linear(m, weight: w1)), weight: w2)), to: [3, 4, 1, 1]) }
    assertGradientsCorrect(at: [x, r, w, b, w1, w2], "batchNorm excitation") {
      batchNorm(x, weight: w, bias: b, excitation: excitation, adding: r).output
    }
    let channelMajor = { (v: Variable) in Variable(permute(permute(v.value, [1, 0, 2, 3]).contiguous(), [1, 0, 2, 3]), requiresGrad: true) }
    let (xc, rc) = (channelMajor(x), channelMajor(r))
    for (input, residual, name) in [(x, r, "row-major"), (x, x, "the input as residual"), (xc, rc, "channel-major"), (xc, xc, "channel-major, the input as residual"), (xc, r, "mixed layouts")] {
      var results: [(Tensor, [Tensor?])] = []
      for fused in [true, false] {
        for v in [input, residual, w, b, w1, w2] { v.grad = nil }
        let y: Variable
        if fused {
          y = batchNorm(input, weight: w, bias: b, excitation: excitation, adding: residual).output
        } else {
          let h = batchNorm(input, weight: w, bias: b).output
          y = addReLU(h, scaledBy: excitation(mean(h, alongAxes: [2, 3])), residual)
        }
        y.backward(seed: x.value * 3 - 1)
        results.append((y.value, [input, residual, w, b, w1, w2].map(\.grad)))
      }
      assertBitIdentical(results[0].0, results[1].0, "\(name): value")
      for (i, (a, c)) in zip(results[0].1, results[1].1).enumerated() { assertBitIdentical(a, c, "\(name): gradient of input \(i)") }
    }
  }

  func testBatchNormReLUConv() {
    let x = leaf([3, 4, 5, 4], scale: 2), g = leaf([4]), b = leaf([4])
    for (w, stride, padding, groups): (Variable, IntOrPair, IntOrPair, Int) in [(leaf([6, 4, 3, 3]), 1, 1, 1), (leaf([4, 2, 3, 2]), 2, 0, 2), (leaf([5, 4, 1, 1]), 1, 0, 1)] {
      assertGradientsCorrect(at: [x, g, b, w], "batchNormReLUConv2d stride \(stride) groups \(groups)") {
        batchNormReLUConv2d(x, normWeight: g, normBias: b, convWeight: w, stride: stride, padding: padding, groups: groups).output
      }
    }
  }

  /// The fused pre-activation unit is bit-identical to batch norm, ReLU and convolution composed,
  /// forward and backward (it recomputes the normalised map from the same operands).
  func testBatchNormReLUConvEqualsItsComposition() {
    for dtype in [DType.float32, .float64] {
      let x = Variable(Tensor(randomNormal: [4, 6, 7, 5], dtype: dtype, using: &random), requiresGrad: true)
      let g = Variable(Tensor(randomNormal: [6], dtype: dtype, using: &random), requiresGrad: true)
      let b = Variable(Tensor(randomNormal: [6], dtype: dtype, using: &random), requiresGrad: true)
      let w = Variable(Tensor(randomNormal: [8, 6, 3, 3], dtype: dtype, using: &random), requiresGrad: true)
      let dy = Tensor(randomNormal: [4, 8, 7, 5], dtype: dtype, using: &random)
      let composed = conv2d(batchNorm(x, weight: g, bias: b, applyingReLU: true).output, w, padding: 1)
      composed.backward(seed: dy)
      let expected = [x, g, b, w].map { $0.grad! }
      for v in [x, g, b, w] { v.grad = nil }
      let fused = batchNormReLUConv2d(x, normWeight: g, normBias: b, convWeight: w, padding: 1).output
      fused.backward(seed: dy)
      assertBitIdentical(fused.value, composed.value, "output \(dtype)")
      for (v, e) in zip([x, g, b, w], expected) { assertBitIdentical(v.grad, e, "gradient \(dtype)") }
    }
  }

  func testConcatenatedConv2d() {
    let x = leaf([2, 3, 5, 4])
    let depthwise = [leaf([3, 1, 3, 3]), leaf([3, 1, 5, 5]), leaf([3, 1, 3, 3])]
    assertGradientsCorrect(at: [x] + depthwise, "depthwise branches") { concatenatedConv2d(x, depthwise, paddings: [1, 2, 1], groups: 3) }
    let dense = [leaf([2, 3, 3, 3]), leaf([4, 3, 1, 1])]
    assertGradientsCorrect(at: [x] + dense, "strided dense branches") { concatenatedConv2d(x, dense, stride: 2, paddings: [1, 0]) }
  }

  func testMixedConv2d() {
    let x = leaf([2, 5, 6, 5])
    let weights = [leaf([2, 2, 3, 3]), leaf([1, 1, 5, 5]), leaf([3, 2, 1, 1])]
    assertGradientsCorrect(at: [x] + weights, "parts of 2, 1 and 2 channels") { mixedConv2d(x, weights, paddings: [1, 2, 0]) }
    assertGradientsCorrect(at: [x] + weights, "strided parts") { mixedConv2d(x, weights, stride: 2, paddings: [1, 2, 0]) }
  }
}
