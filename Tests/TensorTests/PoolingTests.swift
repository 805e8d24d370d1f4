import Reprise
import TestSupport
import XCTest

final class PoolingTests: XCTestCase {
  /// Windows of a plane by PyTorch's rules: origin oy * stride - padding, clipped to the input.
  static func pool(
    _ x: [Double], _ shape: [Int], kernel: Int, stride: Int, padding: Int, _ reduce: ([Double], Int) -> Double
  ) -> (values: [Double], shape: [Int]) {
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
    let oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1
    var out: [Double] = []
    for p in 0..<n * c {
      for oy in 0..<oh {
        for ox in 0..<ow {
          var window: [Double] = []
          var padded = 0
          for ky in 0..<kernel {
            for kx in 0..<kernel {
              let iy = oy * stride - padding + ky, ix = ox * stride - padding + kx
              if iy >= 0 && iy < h && ix >= 0 && ix < w { window.append(x[(p * h + iy) * w + ix]) } else if iy < h + padding && ix < w + padding { padded += 1 }
            }
          }
          out.append(reduce(window, window.count + padded))
        }
      }
    }
    return (out, [n, c, oh, ow])
  }

  func testForwardAgainstReference() {
    var random = RandomGenerator(seed: 11)
    // [2, 3, 6, 8] with 2x2 windows of stride 2 takes the exact-tiling path; 7 rows do not.
    for (kernel, stride, padding) in [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)] {
      for shape in [[2, 3, 7, 6], [2, 3, 6, 8]] {
        let x = Tensor(randomNormal: shape, dtype: .float64, using: &random)
        let v = x.scalars(as: Double.self)
        let maxRef = Self.pool(v, shape, kernel: kernel, stride: stride, padding: padding) { w, _ in w.max()! }
        let avgRef = Self.pool(v, shape, kernel: kernel, stride: stride, padding: padding) { w, count in w.reduce(0, +) / Double(count) }
        let avgExcl = Self.pool(v, shape, kernel: kernel, stride: stride, padding: padding) { w, _ in w.reduce(0, +) / Double(w.count) }
        let k = IntOrPair(kernel), s = IntOrPair(stride), p = IntOrPair(padding)
        assertClose(maxPool2d(x, kernelSize: k, stride: s, padding: p), Tensor(maxRef.values, shape: maxRef.shape), "max \(kernel) \(stride) \(padding) \(shape)")
        assertClose(avgPool2d(x, kernelSize: k, stride: s, padding: p), Tensor(avgRef.values, shape: avgRef.shape), "avg \(kernel) \(stride) \(padding) \(shape)")
        assertClose(
          avgPool2d(x, kernelSize: k, stride: s, padding: p, countingPadding: false), Tensor(avgExcl.values, shape: avgExcl.shape),
          "avg excluding padding \(kernel) \(stride) \(padding) \(shape)")
      }
    }
  }

  /// The backward kernels are the transposes of the forward maps: <dy, pool(x + t e_i)> changes at
  /// rate dx[i] (checked by central differences on every element): overlapping padded windows,
  /// 2x2 windows that tile the input exactly, and 2x2 windows that leave the last row and column out.
  func testBackwardIsTheDerivative() {
    var random = RandomGenerator(seed: 12)
    for (shape, kernel, stride, padding) in [([1, 2, 5, 5], 3, 2, 1), ([1, 2, 4, 6], 2, 2, 0), ([1, 2, 5, 5], 2, 2, 0)] {
      checkBackward(shape, IntOrPair(kernel), IntOrPair(stride), IntOrPair(padding), using: &random)
    }
  }

  private func checkBackward(_ shape: [Int], _ kernel: IntOrPair, _ stride: IntOrPair, _ padding: IntOrPair, using random: inout RandomGenerator) {
    let x = Tensor(randomNormal: shape, dtype: .float64, using: &random)
    let probe = maxPool2d(x, kernelSize: kernel, stride: stride, padding: padding)
    let dy = Tensor(randomNormal: probe.shape, dtype: .float64, using: &random)
    let dxMax = maxPool2dBackward(dy, x, kernelSize: kernel, stride: stride, padding: padding)
    let dxAvg = avgPool2dBackward(dy, inputShape: shape, kernelSize: kernel, stride: stride, padding: padding)
    var values = x.scalars(as: Double.self)
    let eps = 1e-6
    for i in values.indices {
      func objective(_ pool: (Tensor) -> Tensor) -> Double {
        values[i] += eps
        let plus = sum(pool(Tensor(values, shape: shape)) * dy).scalar
        values[i] -= 2 * eps
        let minus = sum(pool(Tensor(values, shape: shape)) * dy).scalar
        values[i] += eps
        return (plus - minus) / (2 * eps)
      }
      let at = "element \(i) of \(shape), kernel \(kernel), stride \(stride), padding \(padding)"
      XCTAssertEqual(dxMax.scalars(as: Double.self)[i], objective { maxPool2d($0, kernelSize: kernel, stride: stride, padding: padding) }, accuracy: 1e-6, at)
      XCTAssertEqual(dxAvg.scalars(as: Double.self)[i], objective { avgPool2d($0, kernelSize: kernel, stride: stride, padding: padding) }, accuracy: 1e-6, at)
    }
  }

  /// Gradients of 1x1 outputs whose size-1 dimensions carry arbitrary strides (as a channel-major
  /// map of 1x1 planes does) give the same input gradient as a row-major copy: the result keeps dense
  /// planes whatever those strides say (a DenseNet on 4x4 inputs once hit this).
  func testBackwardOfOneByOneGradientsWithOddStrides() {
    var random = RandomGenerator(seed: 13)
    let dense = Tensor(randomNormal: [2, 3, 1, 1], dtype: .float64, using: &random)
    let odd = dense.copied(strides: [1, 2, 40, 40])
    XCTAssertEqual(odd.strides, [1, 2, 40, 40])
    for (a, b) in [
      (avgPool2dBackward(odd, inputShape: [2, 3, 2, 2], kernelSize: 2), avgPool2dBackward(dense, inputShape: [2, 3, 2, 2], kernelSize: 2)),
      (avgPool2d(odd, kernelSize: 1), avgPool2d(dense, kernelSize: 1)),
    ] {
      assertBitIdentical(a, b)
    }
    let x = Tensor(randomNormal: [2, 3, 2, 2], dtype: .float64, using: &random)
    assertBitIdentical(maxPool2dBackward(odd, x, kernelSize: 2), maxPool2dBackward(dense, x, kernelSize: 2))
  }
}
