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
    for (kernel, stride, padding) in [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)] {
      let shape = [2, 3, 7, 6]
      let x = Tensor(randomNormal: shape, dtype: .float64, using: &random)
      let v = x.scalars(as: Double.self)
      let maxRef = Self.pool(v, shape, kernel: kernel, stride: stride, padding: padding) { w, _ in w.max()! }
      let avgRef = Self.pool(v, shape, kernel: kernel, stride: stride, padding: padding) { w, count in w.reduce(0, +) / Double(count) }
      let avgExcl = Self.pool(v, shape, kernel: kernel, stride: stride, padding: padding) { w, _ in w.reduce(0, +) / Double(w.count) }
      let k = IntOrPair(kernel), s = IntOrPair(stride), p = IntOrPair(padding)
      assertClose(maxPool2d(x, kernelSize: k, stride: s, padding: p), Tensor(maxRef.values, shape: maxRef.shape), "max \(kernel) \(stride) \(padding)")
      assertClose(avgPool2d(x, kernelSize: k, stride: s, padding: p), Tensor(avgRef.values, shape: avgRef.shape), "avg \(kernel) \(stride) \(padding)")
      assertClose(
        avgPool2d(x, kernelSize: k, stride: s, padding: p, countingPadding: false), Tensor(avgExcl.values, shape: avgExcl.shape),
        "avg excluding padding \(kernel) \(stride) \(padding)")
    }
  }

  /// The backward kernels are the transposes of the forward maps: <dy, pool(x + t e_i)> changes at
  /// rate dx[i] (checked by central differences on every element).
  func testBackwardIsTheDerivative() {
    var random = RandomGenerator(seed: 12)
    let shape = [1, 2, 5, 5]
    let x = Tensor(randomNormal: shape, dtype: .float64, using: &random)
    let probe = maxPool2d(x, kernelSize: 3, stride: 2, padding: 1)
    let dy = Tensor(randomNormal: probe.shape, dtype: .float64, using: &random)
    let dxMax = maxPool2dBackward(dy, x, kernelSize: 3, stride: 2, padding: 1)
    let dxAvg = avgPool2dBackward(dy, inputShape: shape, kernelSize: 3, stride: 2, padding: 1)
    var values = x.scalars(as: Double.self)
    let eps = 1e-6
    for i in values.indices {
      func objective(_ pool: (Tensor) -> Tensor) -> Double {
        values[i] += eps
        let plus = (pool(Tensor(values, shape: shape)) * dy).sum().scalar
        values[i] -= 2 * eps
        let minus = (pool(Tensor(values, shape: shape)) * dy).sum().scalar
        values[i] += eps
        return (plus - minus) / (2 * eps)
      }
      XCTAssertEqual(dxMax.scalars(as: Double.self)[i], objective { maxPool2d($0, kernelSize: 3, stride: 2, padding: 1) }, accuracy: 1e-6)
      XCTAssertEqual(dxAvg.scalars(as: Double.self)[i], objective { avgPool2d($0, kernelSize: 3, stride: 2, padding: 1) }, accuracy: 1e-6)
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
