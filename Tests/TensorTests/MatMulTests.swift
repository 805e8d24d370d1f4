import Reprise
import TestSupport
import XCTest

final class MatMulTests: XCTestCase {
  static func reference(_ a: [Double], _ b: [Double], _ m: Int, _ k: Int, _ n: Int) -> [Double] {
    var c = [Double](repeating: 0, count: m * n)
    for i in 0..<m { for j in 0..<n { for p in 0..<k { c[i * n + j] += a[i * k + p] * b[p * n + j] } } }
    return c
  }

  func testOddSizesAndTransposedViews() {
    forEachSeed { seed, random in
      let (m, k, n) = (Int(1 + random.next() % 9), Int(1 + random.next() % 9), Int(1 + random.next() % 9))
      let a = Tensor(randomNormal: [m, k], using: &random), b = Tensor(randomNormal: [k, n], using: &random)
      let expected = Tensor(Self.reference(a.scalars(as: Double.self), b.scalars(as: Double.self), m, k, n), shape: [m, n])
      assertClose(matmul(a, b), expected.converted(to: .float32), "seed \(seed)")
      // Transposed views go to BLAS as transposed operands.
      let at = transpose(transpose(a).contiguous()), bt = transpose(transpose(b).contiguous())
      assertClose(matmul(at, bt), expected.converted(to: .float32), "transposed, seed \(seed)")
    }
  }

  /// Products large enough to be split across threads, each way the split is made: along K (a long
  /// inner dimension, small result: weight gradients), by column blocks (several per thread) and by
  /// row blocks; with plain and transposed operands, against the reference loops.
  func testProductsSplitAcrossThreads() {
    let threads = Parallel.threadCount
    Parallel.setThreadCount(2)
    defer { Parallel.setThreadCount(threads) }
    var random = RandomGenerator(seed: 21)
    for (m, k, n) in [(12, 40_000, 20), (8, 64, 8_192), (600, 64, 100)] {
      let a = Tensor(randomNormal: [m, k], dtype: .float64, using: &random)
      let b = Tensor(randomNormal: [k, n], dtype: .float64, using: &random)
      let expected = Tensor(Self.reference(a.scalars(as: Double.self), b.scalars(as: Double.self), m, k, n), shape: [m, n])
      assertClose(matmul(a, b), expected, relativeTolerance: 1e-10, absoluteTolerance: 1e-9, "\(m)x\(k)x\(n)")
      let at = transpose(transpose(a).contiguous()), bt = transpose(transpose(b).contiguous())
      assertClose(matmul(at, bt), expected, relativeTolerance: 1e-10, absoluteTolerance: 1e-9, "transposed \(m)x\(k)x\(n)")
    }
  }

  func testBatchedWithBroadcastBatchDimensions() {
    var random = RandomGenerator(seed: 8)
    let a = Tensor(randomNormal: [2, 1, 3, 4], dtype: .float64, using: &random)
    let b = Tensor(randomNormal: [3, 4, 5], dtype: .float64, using: &random)
    let c = matmul(a, b)
    XCTAssertEqual(c.shape, [2, 3, 3, 5])
    for i in 0..<2 {
      for j in 0..<3 {
        let ai = reshape(slice(a, i..<i + 1, alongAxis: 0), to: [3, 4]).scalars(as: Double.self)
        let bj = reshape(slice(b, j..<j + 1, alongAxis: 0), to: [4, 5]).scalars(as: Double.self)
        let cij = reshape(slice(slice(c, i..<i + 1, alongAxis: 0), j..<j + 1, alongAxis: 1), to: [3, 5])
        assertClose(cij, Tensor(Self.reference(ai, bj, 3, 4, 5), shape: [3, 5]), relativeTolerance: 1e-12)
      }
    }
  }

  /// [..., M, K] x [K, N] runs as one product over all rows when the batch and M dimensions merge
  /// (a slice, a contiguous tensor), and per batch position otherwise (a transposed view); many
  /// small batched products run whole on the threads. All equal the reference loops; `linear`
  /// equals the product plus its bias.
  func testRowsFoldIntoOneProductAndLinearAddsItsBias() {
    let threads = Parallel.threadCount
    Parallel.setThreadCount(2)
    defer { Parallel.setThreadCount(threads) }
    var random = RandomGenerator(seed: 9)
    let wide = Tensor(randomNormal: [3, 5, 9], dtype: .float64, using: &random)
    let weight = Tensor(randomNormal: [4, 6], dtype: .float64, using: &random), bias = Tensor(randomNormal: [6], dtype: .float64, using: &random)
    let operands = [
      ("contiguous", slice(wide, 0..<4, alongAxis: 2).contiguous()), ("a slice", slice(wide, 2..<6, alongAxis: 2)),
      ("a transposed view", transpose(slice(transpose(slice(wide, 0..<5, alongAxis: 2), 1, 2), 0..<4, alongAxis: 1), 1, 2)),
    ]
    for (name, a) in operands {
      let rows = reshape(a.contiguous(), to: [15, 4])
      let expected = Self.reference(rows.scalars(as: Double.self), weight.scalars(as: Double.self), 15, 4, 6)
      assertClose(matmul(a, weight), Tensor(expected, shape: [3, 5, 6]), relativeTolerance: 1e-12, name)
      let withBias = expected.enumerated().map { $0.element + bias.scalars(as: Double.self)[$0.offset % 6] }
      assertClose(linear(a, weight: transpose(weight).contiguous(), bias: bias), Tensor(withBias, shape: [3, 5, 6]), relativeTolerance: 1e-12, "linear of \(name)")
    }
    let many = Tensor(randomNormal: [64, 3, 5], dtype: .float64, using: &random), other = Tensor(randomNormal: [64, 5, 2], dtype: .float64, using: &random)
    let products = matmul(many, other)
    for i in [0, 31, 63] {
      let expected = Self.reference(
        slice(many, i..<i + 1, alongAxis: 0).scalars(as: Double.self), slice(other, i..<i + 1, alongAxis: 0).scalars(as: Double.self), 3, 5, 2)
      assertClose(reshape(slice(products, i..<i + 1, alongAxis: 0), to: [3, 2]), Tensor(expected, shape: [3, 2]), relativeTolerance: 1e-12, "batch \(i)")
    }
  }

  func testMismatchNamesShapes() {
    assertStops(withMessageContaining: ["matmul: shapes [2, 3] (float32) and [4, 5] (float32) do not fit"], in: self) {
      _ = matmul(Tensor(zeros: [2, 3]), Tensor(zeros: [4, 5]))
    }
  }
}
