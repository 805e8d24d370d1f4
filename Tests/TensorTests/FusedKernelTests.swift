import Foundation
import Reprise
import TestSupport
import XCTest

/// The fused kernels of sequence models (softmax, GELU, layer norm, attention) against reference
/// loops in Float64, and their Float32 results (the vectorised kernels, where the processor has
/// AVX2) against the Float64 ones.
final class FusedKernelTests: XCTestCase {
  /// Softmax and log-softmax of rows of every tail length and across the 512-term sum blocks,
  /// with masked (-inf) entries; a row of -inf, a NaN or +inf gives NaN as the formula does.
  func testSoftmaxRows() {
    var random = RandomGenerator(seed: 31)
    for length in [1, 7, 8, 9, 33, 700] {
      var values = Tensor(randomNormal: [3, length], standardDeviation: 4, dtype: .float64, using: &random).scalars(as: Double.self)
      if length > 1 { values[length + 1] = -.infinity }  // a masked entry in row 1
      let x = Tensor(values, shape: [3, length])
      for logarithm in [false, true] {
        var expected = [Double]()
        for row in 0..<3 {
          let r = Array(values[row * length..<(row + 1) * length]), peak = r.max()!
          let total = r.map { Foundation.exp($0 - peak) }.reduce(0, +)
          expected += r.map { logarithm ? $0 - peak - Foundation.log(total) : Foundation.exp($0 - peak) / total }
        }
        let name = "\(logarithm ? "logSoftmax" : "softmax") of length \(length)"
        let y64 = (logarithm ? logSoftmax(x, alongAxis: 1) : softmax(x, alongAxis: 1)).scalars(as: Double.self)
        let f = x.converted(to: .float32)
        let y32 = (logarithm ? logSoftmax(f, alongAxis: 1) : softmax(f, alongAxis: 1)).scalars(as: Double.self)
        for (i, e) in expected.enumerated() {
          XCTAssertEqual(y64[i], e, accuracy: 1e-13 * Swift.max(1, Swift.abs(e)), "\(name) Float64 at \(i)")
          if e.isFinite {
            XCTAssertEqual(y32[i], e, accuracy: 2e-6 * Swift.max(1, Swift.abs(e)), "\(name) Float32 at \(i)")
          } else {
            XCTAssertEqual(y32[i], e, "\(name) Float32 at \(i)")
          }
        }
      }
    }
    for dtype in [DType.float32, .float64] {
      for special in [[-Double.infinity, -.infinity, -.infinity], [1, .nan, 2], [1, .infinity, 2]] {
        XCTAssert(softmax(Tensor(special, shape: [1, 3]).converted(to: dtype), alongAxis: 1).scalars(as: Double.self).allSatisfy(\.isNaN), "\(special) \(dtype)")
      }
    }
    // Along a middle axis, through a permuted copy.
    let x = Tensor(randomNormal: [2, 5, 3], dtype: .float64, using: &random)
    let moved = permute(softmax(permute(x, [0, 2, 1]).contiguous(), alongAxis: 2), [0, 2, 1])
    assertClose(softmax(x, alongAxis: 1), moved, relativeTolerance: 1e-15, absoluteTolerance: 0)
  }

  /// The softmax gradient y (g - Σ g y) and the log-softmax gradient g - e^y Σ g, both precisions.
  func testSoftmaxGradientRows() {
    var random = RandomGenerator(seed: 32)
    let x = Tensor(randomNormal: [4, 21], dtype: .float64, using: &random), g = Tensor(randomNormal: [4, 21], dtype: .float64, using: &random)
    for logarithm in [false, true] {
      let y = logarithm ? logSoftmax(x, alongAxis: 1) : softmax(x, alongAxis: 1)
      let expected = logarithm
        ? g - exp(y) * sum(g, alongAxes: [1], keepingDimensions: true)
        : y * (g - sum(g * y, alongAxes: [1], keepingDimensions: true))
      assertClose(softmaxGradient(g, output: y, alongAxis: 1, logarithm: logarithm), expected, relativeTolerance: 1e-12, absoluteTolerance: 1e-14)
      let y32 = y.converted(to: .float32), g32 = g.converted(to: .float32)
      assertClose(softmaxGradient(g32, output: y32, alongAxis: 1, logarithm: logarithm), expected.converted(to: .float32), relativeTolerance: 1e-5, absoluteTolerance: 1e-6)
    }
  }

  /// GELU and its gradient: Float64 to the formula, Float32 within a few units of Float32 rounding
  /// of the value, over the range where Φ matters and far into both tails.
  func testGELU() {
    let points = stride(from: -12.0, through: 12.0, by: 0.01).map { $0 } + [-80, -30, 30, 80, 0]
    let x = Tensor(points, shape: [points.count])
    let g = Tensor(points.map { 1 + $0 / 100 }, shape: [points.count])
    let value = { (v: Double) in v * Foundation.erfc(-v / 2.0.squareRoot()) / 2 }
    let slope = { (v: Double) in Foundation.erfc(-v / 2.0.squareRoot()) / 2 + v * Foundation.exp(-v * v / 2) / (2 * Double.pi).squareRoot() }
    let y64 = gelu(x).scalars(as: Double.self), y32 = gelu(x.converted(to: .float32)).scalars(as: Double.self)
    let d64 = geluGradient(g, input: x).scalars(as: Double.self)
    let d32 = geluGradient(g.converted(to: .float32), input: x.converted(to: .float32)).scalars(as: Double.self)
    for (i, v) in points.enumerated() {
      let (e, de) = (value(v), slope(v) * (1 + v / 100))
      XCTAssertEqual(y64[i], e, accuracy: 1e-14 * Swift.max(1, Swift.abs(e)), "gelu(\(v)) Float64")
      XCTAssertEqual(d64[i], de, accuracy: 1e-14 * Swift.max(1, Swift.abs(de)), "gelu'(\(v)) Float64")
      XCTAssertEqual(y32[i], e, accuracy: 1e-6 * Swift.max(1, Swift.abs(v)), "gelu(\(v)) Float32")
      XCTAssertEqual(d32[i], de, accuracy: 2e-6 * Swift.max(1, Swift.abs(v)), "gelu'(\(v)) Float32")
    }
    XCTAssert(gelu(Tensor([Double.nan], shape: [1]).converted(to: .float32)).scalars(as: Double.self)[0].isNaN)
  }

  /// Layer norm against its formula with and without the affine parameters, and its gradient
  /// against the formula's derivative; Float32 against Float64.
  func testLayerNorm() {
    var random = RandomGenerator(seed: 33)
    let x = Tensor(randomNormal: [5, 3, 13], mean: 3, dtype: .float64, using: &random)
    let w = Tensor(randomNormal: [13], dtype: .float64, using: &random), b = Tensor(randomNormal: [13], dtype: .float64, using: &random)
    let m = mean(x, alongAxes: [2], keepingDimensions: true), inverse = 1 / sqrt(variance(x, alongAxes: [2], keepingDimensions: true) + 1e-5)
    let normalized = (x - m) * inverse
    let (y, rowMean, r) = layerNorm(x, normalizedCount: 13, weight: w, bias: b, epsilon: 1e-5)
    assertClose(y, normalized * w + b, relativeTolerance: 1e-12, absoluteTolerance: 1e-13)
    assertClose(layerNorm(x, normalizedCount: 13, weight: nil, bias: nil, epsilon: 1e-5).output, normalized, relativeTolerance: 1e-12, absoluteTolerance: 1e-13)
    let g = Tensor(randomNormal: [5, 3, 13], dtype: .float64, using: &random)
    let h = g * w
    let dx = (h - mean(h, alongAxes: [2], keepingDimensions: true) - normalized * mean(h * normalized, alongAxes: [2], keepingDimensions: true)) * inverse
    let grads = layerNormGradient(g, input: x, mean: rowMean, inverseDeviation: r, weight: w, affine: true)
    assertClose(grads.input, dx, relativeTolerance: 1e-10, absoluteTolerance: 1e-12)
    assertClose(grads.weight ?? Tensor(zeros: [0]), sum(g * normalized, alongAxes: [0, 1]), relativeTolerance: 1e-12, absoluteTolerance: 1e-12)
    assertClose(grads.bias ?? Tensor(zeros: [0]), sum(g, alongAxes: [0, 1]), relativeTolerance: 1e-12, absoluteTolerance: 1e-12)
    XCTAssertNil(layerNormGradient(g, input: x, mean: rowMean, inverseDeviation: r, weight: nil, affine: false).weight)
    let y32 = layerNorm(x.converted(to: .float32), normalizedCount: 13, weight: w.converted(to: .float32), bias: b.converted(to: .float32), epsilon: 1e-5).output
    assertClose(y32, y.converted(to: .float32), relativeTolerance: 1e-5, absoluteTolerance: 1e-5)
  }

  /// Attention against softmax(scale · Q Kᵀ + mask) V computed with reference loops: causal and
  /// not, fewer queries than keys, strided views as operands, and its gradients against the
  /// formulas; Float32 against Float64.
  func testAttention() {
    var random = RandomGenerator(seed: 34)
    // Odd sizes, and with more than one block of 32 queries (the causal kernel's blocks).
    for (batch, heads, lq, lk, d, dv) in [(2, 3, 5, 7, 4, 6), (1, 2, 70, 75, 3, 2)] {
      // Operands as views: query heads sliced out of a wider tensor and permuted.
      let packed = Tensor(randomNormal: [batch, lq, heads, d + 2], dtype: .float64, using: &random)
      let q = permute(slice(packed, 1..<d + 1, alongAxis: 3), [0, 2, 1, 3])
      let k = Tensor(randomNormal: [batch, heads, lk, d], dtype: .float64, using: &random)
      let v = Tensor(randomNormal: [batch, heads, lk, dv], dtype: .float64, using: &random)
      let g = Tensor(randomNormal: [batch, heads, lq, dv], dtype: .float64, using: &random)
      for causal in [false, true] {
        let scale = 0.37, name = "\(lq)x\(lk), causal \(causal)"
        var mask = [Double](repeating: 0, count: lq * lk)
        if causal { for i in 0..<lq { for j in (i + 1 + lk - lq)..<lk { mask[i * lk + j] = -.infinity } } }
        let p = softmax(matmul(q, transpose(k)) * scale + Tensor(mask, shape: [lq, lk]), alongAxis: 3)
        let (out, weights) = scaledDotProductAttention(query: q, key: k, value: v, scale: scale, causal: causal)
        assertClose(weights, p, relativeTolerance: 1e-12, absoluteTolerance: 1e-15, "weights, \(name)")
        assertClose(out, matmul(p, v), relativeTolerance: 1e-12, absoluteTolerance: 1e-13, "output, \(name)")
        let ds = p * (matmul(g, transpose(v)) - sum(p * matmul(g, transpose(v)), alongAxes: [3], keepingDimensions: true))
        let grads = scaledDotProductAttentionGradient(g, query: q, key: k, value: v, weights: weights, scale: scale, causal: causal)
        assertClose(grads.value, matmul(transpose(p), g), relativeTolerance: 1e-11, absoluteTolerance: 1e-12, "dV, \(name)")
        assertClose(grads.query, matmul(ds, k) * scale, relativeTolerance: 1e-11, absoluteTolerance: 1e-12, "dQ, \(name)")
        assertClose(grads.key, matmul(transpose(ds), q) * scale, relativeTolerance: 1e-11, absoluteTolerance: 1e-12, "dK, \(name)")
        let out32 = scaledDotProductAttention(
          query: q.converted(to: .float32), key: k.converted(to: .float32), value: v.converted(to: .float32), scale: scale, causal: causal).output
        assertClose(out32, out.converted(to: .float32), relativeTolerance: 1e-5, absoluteTolerance: 1e-5, "Float32, \(name)")
      }
      // The output stores heads inside positions, so merging them is a view.
      let out = scaledDotProductAttention(query: q, key: k, value: v, scale: 1, causal: false).output
      XCTAssertEqual(reshape(permute(out, [0, 2, 1, 3]), to: [batch, lq, heads * dv]).strides, [lq * heads * dv, heads * dv, 1])
    }
  }
}
