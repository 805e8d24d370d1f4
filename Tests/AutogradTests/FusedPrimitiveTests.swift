import Reprise
import TestSupport
import XCTest

/// The primitives that fuse what composites could compute (linear, layer norm, attention, and
/// softmax in PrimitiveGradientTests): gradients against central differences in Float64 on odd
/// shapes, and values and gradients equal to their composites.
final class FusedPrimitiveTests: XCTestCase {
  var random = RandomGenerator(seed: 41)

  func leaf(_ shape: [Int]) -> Variable { randomLeaf(shape, using: &random) }

  /// Asserts that `fused` and `composite` give the same value and the same gradients at `inputs`.
  func assertEqualsComposite(
    _ inputs: [Variable], _ name: String, _ fused: () -> Variable, _ composite: () -> Variable,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    var results: [(value: Tensor, gradients: [Tensor?])] = []
    for useFused in [true, false] {
      for x in inputs { x.grad = nil }
      let y = useFused ? fused() : composite()
      var weights = RandomGenerator(seed: 42)  // the same output weights for both
      sum(y * Variable(Tensor(randomNormal: y.shape, dtype: .float64, using: &weights))).backward()
      results.append((y.value, inputs.map(\.grad)))
    }
    assertClose(results[0].value, results[1].value, relativeTolerance: 1e-12, absoluteTolerance: 1e-13, "\(name) value", file: file, line: line)
    for (i, (a, b)) in zip(results[0].gradients, results[1].gradients).enumerated() {
      guard let a, let b else { XCTFail("\(name): input \(i) has no gradient", file: file, line: line); continue }
      assertClose(a, b, relativeTolerance: 1e-10, absoluteTolerance: 1e-12, "\(name) gradient of input \(i)", file: file, line: line)
    }
  }

  func testLinear() {
    let x = leaf([2, 3, 5]), w = leaf([4, 5]), b = leaf([4])
    assertGradientsCorrect(at: [x, w, b], "linear") { linear(x, weight: w, bias: b) }
    assertGradientsCorrect(at: [x, w], "linear without bias") { linear(x, weight: w) }
    assertEqualsComposite([x, w, b], "linear") { linear(x, weight: w, bias: b) } _: { matmul(x, transpose(w)) + b }
  }

  func testLayerNorm() {
    let x = leaf([3, 2, 7]), w = leaf([2, 7]), b = leaf([2, 7])
    assertGradientsCorrect(at: [x, w, b], "layerNorm") { layerNorm(x, normalizedShape: [2, 7], weight: w, bias: b) * x }
    assertGradientsCorrect(at: [x], "layerNorm without affine") { layerNorm(x, normalizedShape: [7]) * x }
    assertEqualsComposite([x, w, b], "layerNorm") {
      layerNorm(x, normalizedShape: [2, 7], weight: w, bias: b)
    } _: {
      let centred = x - mean(x, alongAxes: [1, 2], keepingDimensions: true)
      return centred / sqrt(mean(centred * centred, alongAxes: [1, 2], keepingDimensions: true) + 1e-5) * w + b
    }
  }

  func testScaledDotProductAttention() {
    let q = leaf([2, 3, 4, 5]), k = leaf([2, 3, 6, 5]), v = leaf([2, 3, 6, 2])
    for causal in [false, true] {
      assertGradientsCorrect(at: [q, k, v], "attention, causal \(causal)") { scaledDotProductAttention(q, k, v, causal: causal) }
      assertEqualsComposite([q, k, v], "attention, causal \(causal)") {
        scaledDotProductAttention(q, k, v, causal: causal, scale: 0.3)
      } _: {
        var mask = [Double](repeating: 0, count: 4 * 6)
        if causal { for i in 0..<4 { for j in (i + 3)..<6 { mask[i * 6 + j] = -.infinity } } }
        let scores = matmul(q, transpose(k)) * 0.3 + Variable(Tensor(mask, shape: [4, 6]))
        return matmul(softmax(scores, alongAxis: -1), v)
      }
    }
    // More queries than one causal block (32) of the kernel.
    let (lq, lk, lv) = (leaf([1, 1, 36, 2]), leaf([1, 1, 37, 2]), leaf([1, 1, 37, 1]))
    assertGradientsCorrect(at: [lq, lk, lv], "causal attention over two blocks") { scaledDotProductAttention(lq, lk, lv, causal: true) }
    // Heads as views of one projection, as MultiheadAttention passes them.
    let packed = leaf([2, 4, 3 * 6])
    assertGradientsCorrect(at: [packed], "attention over views") {
      let heads = split(packed, sizes: [6, 6, 6], alongAxis: 2).map { permute(reshape($0, to: [2, 4, 2, 3]), [0, 2, 1, 3]) }
      return scaledDotProductAttention(heads[0], heads[1], heads[2], causal: true)
    }
  }
}
