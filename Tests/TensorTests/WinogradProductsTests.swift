import CKernels
import Foundation
@testable import TensorModule
import TestSupport
import XCTest

/// The register kernels of the Winograd products (WinogradProducts.c) against reference loops that
/// add the same fused multiply-adds in the same order, so the bits must be equal: every partial
/// block of rows (1 to 5 of 6, also where a block of rows starts inside a panel of the weights) and
/// of columns (one, two and four vectors, partial), depths of one slab and of several (the depth is
/// taken 128 rows at a time), and sums added onto what C holds; with the blocks that AVX-512 allows
/// (four 8-lane vectors, and for the forward products four, two or one 16-lane vectors with a rest
/// of one 8-lane vector) and without them (on a processor without AVX-512 both runs take the blocks
/// of two 8-lane vectors).
final class WinogradProductsTests: XCTestCase {
  /// `count` floats from `random`, rounded to multiples of 1/64 near zero so that none is denormal.
  private func floats(_ count: Int, _ random: inout RandomGenerator) -> [Float] {
    (0..<count).map { _ in Float(Int.random(in: -256...256, using: &random)) / 64 + random.nextUnit(Float.self) / 8 }
  }

  /// Whether every c[ξ][i][j] (matrices `cStride` apart, rows `ldc` apart) holds, bit for bit, the
  /// ordered loop's sum: what `start` held there (with `accumulate`) or zero, plus term(ξ, i, j, k)'s
  /// two factors for k in 0..<terms, each added by one fused multiply-add. Reports the first that
  /// does not, with `context` (the seed and shape).
  private func matchOrderedLoop(
    _ c: [Float], start: [Float], accumulate: Bool, positions: Int, rows: Int, columns: Int, cStride: Int, ldc: Int, terms: Int,
    _ context: String, file: StaticString = #filePath, line: UInt = #line, term: (_ xi: Int, _ i: Int, _ j: Int, _ k: Int) -> (Float, Float)
  ) -> Bool {
    for xi in 0..<positions {
      for i in 0..<rows {
        for j in 0..<columns {
          var sum = accumulate ? start[xi * cStride + i * ldc + j] : 0
          for k in 0..<terms {
            let (x, y) = term(xi, i, j, k)
            sum = sum.addingProduct(x, y)
          }
          let got = c[xi * cStride + i * ldc + j]
          guard got.bitPattern == sum.bitPattern else {
            XCTFail("\(context), accumulate \(accumulate): c[\(xi)][\(i)][\(j)] = \(got), loop \(sum)", file: file, line: line)
            return false
          }
        }
      }
    }
    return true
  }

  /// Whether c[ξ][i][j] for j from `columns` up to `ldc` (matrices `cStride` apart) still holds, bit
  /// for bit, what `start` held there: the kernels write nothing past C's columns. Reports the first
  /// that does not, with `context`.
  private func untouchedPastColumns(
    _ c: [Float], start: [Float], positions: Int = 1, rows: Int, columns: Int, cStride: Int = 0, ldc: Int, _ context: String,
    file: StaticString = #filePath, line: UInt = #line
  ) -> Bool {
    for xi in 0..<positions {
      for i in 0..<rows {
        for j in columns..<ldc where c[xi * cStride + i * ldc + j].bitPattern != start[xi * cStride + i * ldc + j].bitPattern {
          XCTFail("\(context): c[\(xi)][\(i)][\(j)] past the columns was written", file: file, line: line)
          return false
        }
      }
    }
    return true
  }

  /// A copy of `start` after `kernel` ran on it, with the products' blocks of four vectors that
  /// AVX-512's registers allow (`wide`) or without them.
  private func run(_ start: [Float], wide: Bool, _ kernel: (UnsafeMutablePointer<Float>) -> Void) -> [Float] {
    var c = start
    withWideConvolutionTiles(wide) { c.withUnsafeMutableBufferPointer { kernel($0.baseAddress!) } }
    return c
  }

  /// The transformed weights' panels (`reprise_winograd_weights_f32`'s layout) of the matrices
  /// a[ξ], `rows` x `depth` with rows `depth` apart: row i, depth d at ξ * plane + i / 6 * 6 * depth
  /// + d * 6 + i % 6, the rows rounded up to 6 (the rows past them NaN: the products must not read
  /// them).
  private func panels(_ a: [Float], positions: Int, rows: Int, depth: Int) -> [Float] {
    let plane = (rows + 5) / 6 * 6 * depth
    var u = [Float](repeating: .nan, count: positions * plane)
    for xi in 0..<positions {
      for i in 0..<rows {
        for d in 0..<depth { u[xi * plane + i / 6 * 6 * depth + d * 6 + i % 6] = a[xi * rows * depth + i * depth + d] }
      }
    }
    return u
  }

  /// c[ξ] (+)= a[ξ] b[ξ] with a[ξ] rows [firstRow, firstRow + rows) and depth [firstDepth, firstDepth
  /// + depth) of panelled weights of uRows x uDepth and b[ξ] depth x columns, in the transforms'
  /// layout: rows of b and c `ld` floats apart, matrices a stream apart. Blocks that start inside a
  /// panel (firstRow not a multiple of 6) and inside the depth, as the layers taken in blocks use.
  func testProductsMatchAnOrderedLoop() throws {
    try XCTSkipUnless(vectorKernelsAvailable, "the kernels need AVX2")
    let positions = 2
    let shapes = [
      (13, 7, 21, 0, 13, 0), (6, 129, 16, 0, 6, 0), (11, 300, 9, 0, 11, 0), (1, 257, 40, 0, 1, 0), (17, 128, 8, 0, 17, 0),
      (40, 50, 24, 16, 17, 0), (40, 50, 24, 3, 4, 0), (20, 300, 16, 0, 20, 136), (25, 64, 12, 7, 13, 16),
      (13, 140, 77, 0, 13, 0), (8, 33, 32, 1, 7, 0), (19, 70, 45, 5, 11, 3), (7, 60, 5, 0, 7, 0), (12, 200, 150, 0, 12, 0),
      (6, 20, 70, 2, 4, 0),
    ]
    for (k, (uRows, uDepth, columns, firstRow, rows, firstDepth)) in shapes.enumerated() {
      var random = RandomGenerator(seed: UInt64(40 + k))
      let depth = uDepth - firstDepth, ld = (columns + 7) / 8 * 8 + 8
      let (aStride, bStride, cStride) = (uRows * uDepth, reprise_winograd_stream(depth, ld), reprise_winograd_stream(rows, ld))
      let a = floats(positions * aStride, &random), b = floats(positions * bStride, &random)
      let start = floats(positions * cStride, &random)
      let u = panels(a, positions: positions, rows: uRows, depth: uDepth)
      for wide in [false, true] {
        for accumulate in [false, true] {
          let c = run(start, wide: wide) {
            reprise_winograd_products_f32(
              positions, u, uRows, uDepth, firstRow, rows, firstDepth, depth, b, $0, columns, ld, accumulate ? 1 : 0)
          }
          let context =
            "seed \(40 + k), rows \(firstRow)..<\(firstRow + rows) of \(uRows), depth \(firstDepth)..<\(uDepth), "
            + "\(columns) columns, wide \(wide)"
          guard
            matchOrderedLoop(
              c, start: start, accumulate: accumulate, positions: positions, rows: rows, columns: columns, cStride: cStride,
              ldc: ld, terms: depth, context,
              term: { xi, i, j, d in
                (a[xi * aStride + (firstRow + i) * uDepth + firstDepth + d], b[xi * bStride + d * ld + j])
              })
          else { return }
        }
      }
    }
  }

  /// c[ξ] (+)= a[ξ] b[ξ]^T with a[ξ] rows x count and b[ξ] columns x count (the weight gradient's
  /// products, along the tiles), their rows `ld` apart, and c's rows `ldc` apart.
  func testTransposedProductsMatchAnOrderedLoop() throws {
    try XCTSkipUnless(vectorKernelsAvailable, "the kernels need AVX2")
    let positions = 2
    let shapes = [(13, 7, 21), (6, 136, 16), (11, 300, 9), (5, 40, 100), (7, 64, 32), (12, 33, 61)]
    for (k, (rows, count, columns)) in shapes.enumerated() {
      var random = RandomGenerator(seed: UInt64(60 + k))
      let ld = (count + 7) / 8 * 8 + 8, ldc = columns + 3
      let (aStride, bStride, cStride) = (reprise_winograd_stream(rows, ld), reprise_winograd_stream(columns, ld), rows * ldc)
      let a = floats(positions * aStride, &random), b = floats(positions * bStride, &random)
      let start = floats(positions * cStride, &random)
      var panel = [Float](repeating: 0, count: reprise_winograd_panel_count(columns, count))
      for wide in [false, true] {
        for accumulate in [false, true] {
          let c = run(start, wide: wide) {
            reprise_winograd_transposed_products_f32(positions, a, rows, b, columns, count, ld, $0, ldc, accumulate ? 1 : 0, &panel)
          }
          let context = "seed \(60 + k), \(rows) x \(count) x \(columns), wide \(wide)"
          guard
            matchOrderedLoop(
              c, start: start, accumulate: accumulate, positions: positions, rows: rows, columns: columns, cStride: cStride,
              ldc: ldc, terms: count, context,
              term: { xi, i, j, t in (a[xi * aStride + i * ld + t], b[xi * bStride + j * ld + t]) })
          else { return }
          guard untouchedPastColumns(c, start: start, positions: positions, rows: rows, columns: columns, cStride: cStride, ldc: ldc, context)
          else { return }
        }
      }
    }
  }

  /// A pointwise layer's input gradient, c = a^T b (`reprise_pointwise_products_f32`) with `a` depth
  /// x rows packed by `reprise_pack_transposed_panel_f32`: every partial block of rows and columns,
  /// depths of one slab and of several, C's stores past the caches (`streaming`, on C aligned to 32
  /// bytes and on C one float off, where the kernel stores as usual), and nothing written past C's
  /// columns.
  func testPointwiseProductsMatchAnOrderedLoop() throws {
    try XCTSkipUnless(vectorKernelsAvailable, "the kernels need AVX2")
    let shapes = [(13, 7, 21), (6, 48, 128), (216, 48, 100), (11, 129, 40), (1, 12, 9), (17, 300, 33), (40, 24, 256)]
    for (k, (rows, depth, columns)) in shapes.enumerated() {
      var random = RandomGenerator(seed: UInt64(80 + k))
      let (lda, ldb, ldc) = (rows + 3, columns + 5, (columns + 7) / 8 * 8 + 8)
      let a = floats(depth * lda, &random), b = floats(depth * ldb, &random), start = floats(rows * ldc, &random)
      var panel = [Float](repeating: .nan, count: reprise_winograd_weight_plane(rows, depth))
      reprise_pack_transposed_panel_f32(a, lda, rows, depth, &panel)
      // 64-byte aligned, so that C at offset 0 takes the stores past the caches and at offset 1 not.
      let buffer = UnsafeMutablePointer<Float>(
        OpaquePointer(UnsafeMutableRawPointer.allocate(byteCount: (rows * ldc + 1) * 4, alignment: 64)))
      defer { buffer.deallocate() }
      for wide in [false, true] {
        for (streaming, offset) in [(0, 0), (1, 0), (1, 1)] {
          let c = buffer + offset
          c.update(from: start, count: rows * ldc)
          withWideConvolutionTiles(wide) { reprise_pointwise_products_f32(panel, rows, depth, b, ldb, c, ldc, columns, Int32(streaming)) }
          let result = Array(UnsafeBufferPointer(start: c, count: rows * ldc))
          let context = "seed \(80 + k), \(rows) x \(depth) x \(columns), wide \(wide), streaming \(streaming), offset \(offset)"
          guard
            matchOrderedLoop(
              result, start: start, accumulate: false, positions: 1, rows: rows, columns: columns, cStride: 0, ldc: ldc, terms: depth,
              context, term: { _, i, j, d in (a[d * lda + i], b[d * ldb + j]) })
          else { return }
          guard untouchedPastColumns(result, start: start, rows: rows, columns: columns, ldc: ldc, context) else { return }
        }
      }
    }
  }

  /// A pointwise layer's weight gradient, transposed, c (+)= a b^T (`reprise_pointwise_weight_products_f32`):
  /// chunks of columns that are not a multiple of 8 (where b is read up to its last column only, the
  /// rest of its rows NaN), partial blocks of rows and columns, depths of several slabs, sums added
  /// onto what C holds, and nothing written past C's columns.
  func testPointwiseWeightProductsMatchAnOrderedLoop() throws {
    try XCTSkipUnless(vectorKernelsAvailable, "the kernels need AVX2")
    let shapes = [(13, 7, 21), (216, 256, 48), (11, 300, 9), (40, 1357, 48), (5, 3, 12), (342, 64, 48)]
    for (k, (rows, count, columns)) in shapes.enumerated() {
      var random = RandomGenerator(seed: UInt64(100 + k))
      let (lda, ldb, ldc) = (count + 5, count + 11, columns + 3)
      let a = floats(rows * lda, &random), start = floats(rows * ldc, &random)
      var b = floats(columns * ldb, &random)
      for j in 0..<columns { for t in count..<ldb { b[j * ldb + t] = .nan } }
      var panel = [Float](repeating: 0, count: reprise_winograd_panel_count(columns, count))
      for wide in [false, true] {
        for accumulate in [false, true] {
          let c = run(start, wide: wide) {
            reprise_pointwise_weight_products_f32(a, lda, rows, b, ldb, columns, count, $0, ldc, accumulate ? 1 : 0, &panel)
          }
          let context = "seed \(100 + k), \(rows) x \(count) x \(columns), wide \(wide)"
          guard
            matchOrderedLoop(
              c, start: start, accumulate: accumulate, positions: 1, rows: rows, columns: columns, cStride: 0, ldc: ldc, terms: count,
              context, term: { _, i, j, t in (a[i * lda + t], b[j * ldb + t]) })
          else { return }
          guard untouchedPastColumns(c, start: start, rows: rows, columns: columns, ldc: ldc, context) else { return }
        }
      }
    }
  }

  /// The weight gradient's panel (the patches transposed, one row per tile) has its rows an odd
  /// number of cache lines apart, whatever the number of columns: a column block down 64 rows then
  /// falls into 64 different sets of a 64-set L1 cache and stays there for every block of rows.
  func testPanelRowsFallIntoDifferentCacheSets() {
    for columns in [1, 8, 9, 16, 32, 48, 64, 96, 100, 128, 192, 256, 384, 512] {
      // With 8 tiles, the panel is 8 rows of its pitch.
      let pitch = reprise_winograd_panel_count(columns, 8) / 8, lines = pitch / 16
      XCTAssertEqual(reprise_winograd_panel_count(columns, 8) % 8, 0, "\(columns) columns")
      XCTAssertEqual(pitch % 16, 0, "\(columns) columns: pitch \(pitch)")
      XCTAssertTrue(columns..<(columns + 32) ~= pitch, "\(columns) columns: pitch \(pitch)")
      XCTAssertEqual(Set((0..<64).map { $0 * lines % 64 }).count, 64, "\(columns) columns: pitch \(pitch)")
    }
  }
}
