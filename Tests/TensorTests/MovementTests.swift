import Reprise
import TestSupport
import XCTest

final class MovementTests: XCTestCase {
  let m = Tensor((0..<24).map(Double.init), shape: [2, 3, 4])

  func testReshapeAndInference() {
    XCTAssertEqual(reshape(m, to: [4, -1]).shape, [4, 6])
    XCTAssertEqual(reshape(m, to: [6, 4]).scalars(as: Double.self), (0..<24).map(Double.init))
    // Reshaping a non-contiguous view copies in row-major order of the view.
    XCTAssertEqual(reshape(transpose(m, 0, 2), to: [24]).scalars(as: Double.self)[0..<4], [0, 12, 4, 16])
  }

  /// A reshape that only splits or merges dimensions stepping over each other is a view of the
  /// same elements; one that cannot be a view copies. Both read in row-major order of the source.
  func testReshapeIsAViewWhereTheLayoutAllows() {
    let wide = Tensor((0..<60).map(Double.init), shape: [2, 5, 6])
    let slice = slice(wide, 2..<6, alongAxis: 2)  // [2, 5, 4], rows 6 apart
    let heads = reshape(slice, to: [2, 5, 2, 2])
    XCTAssertEqual(heads.strides, [30, 6, 2, 1], "splitting the sliced axis is a view")
    XCTAssertEqual(heads.scalars(as: Double.self), slice.scalars(as: Double.self))
    let merged = reshape(permute(wide, [1, 0, 2]), to: [5, 12])
    XCTAssertEqual(merged.strides, [12, 1], "merging dimensions that do not step over each other copies")
    XCTAssertEqual(merged.scalars(as: Double.self), permute(wide, [1, 0, 2]).scalars(as: Double.self))
    let ones = reshape(slice, to: [1, 2, 1, 5, 4, 1])
    XCTAssertEqual(ones.scalars(as: Double.self), slice.scalars(as: Double.self))
    XCTAssertEqual(reshape(slice, to: [10, 4]).strides, [6, 1], "rows of a slice merge over the batch")
    XCTAssertEqual(reshape(slice, to: [10, 4]).scalars(as: Double.self), slice.scalars(as: Double.self))
    XCTAssertEqual(reshape(slice, to: [40]).scalars(as: Double.self), slice.scalars(as: Double.self))
    XCTAssertEqual(reshape(Tensor(zeros: [0, 3]), to: [3, 0]).shape, [3, 0])
  }

  func testPermuteIsAViewWithPermutedStrides() {
    let p = permute(m, [2, 0, 1])
    XCTAssertEqual(p.shape, [4, 2, 3])
    XCTAssertEqual(p.strides, [1, 12, 4])
    XCTAssertEqual(p[3, 1, 2], m[1, 2, 3])
  }

  func testSliceSplitConcatenateRoundTrip() {
    let parts = split(m, sizes: [1, 2], alongAxis: 1)
    XCTAssertEqual(parts.map(\.shape), [[2, 1, 4], [2, 2, 4]])
    XCTAssertEqual(parts[1][1, 0, 2], m[1, 1, 2])
    XCTAssertEqual(concatenate(parts, alongAxis: 1).scalars(as: Double.self), m.scalars(as: Double.self))
    let last = slice(m, 2..<4, alongAxis: -1)
    XCTAssertEqual(last.scalars(as: Double.self), [2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23])
  }

  /// Concatenating channel-major maps along channels keeps them channel-major, block after block.
  func testConcatenateChannelMajor() {
    var random = RandomGenerator(seed: 1)
    let a = conv2d(Tensor(randomNormal: [2, 3, 4, 4], using: &random), Tensor(randomNormal: [2, 3, 1, 1], using: &random))
    let b = conv2d(Tensor(randomNormal: [2, 3, 4, 4], using: &random), Tensor(randomNormal: [5, 3, 1, 1], using: &random))
    let c = concatenate([a, b], alongAxis: 1)
    XCTAssertEqual(c.strides, [16, 32, 4, 1])
    assertClose(c, concatenate([a.contiguous(), b.contiguous()], alongAxis: 1))
  }

  func testPadded() {
    let x = Tensor([1, 2, 3, 4] as [Double], shape: [2, 2])
    let p = pad(x, [(1, 0), (0, 2)], value: -1)
    XCTAssertEqual(p.shape, [3, 4])
    XCTAssertEqual(p.scalars(as: Double.self), [-1, -1, -1, -1, 1, 2, -1, -1, 3, 4, -1, -1])
  }

  func testBroadcastView() {
    let row = Tensor([1, 2, 3] as [Double], shape: [3])
    let b = broadcast(row, to: [2, 3])
    XCTAssertEqual(b.strides, [0, 1])
    XCTAssertEqual(b.contiguous().scalars(as: Double.self), [1, 2, 3, 1, 2, 3])
  }

  func testBroadcastAlongRowsIsFilled() {
    // A per-channel value over planes: rows whose source stride is 0.
    let column = Tensor([1.5, -2, 0.25] as [Double], shape: [1, 3, 1, 1])
    let b = broadcast(column, to: [2, 3, 2, 2])
    let expected = [Double]([1.5, -2, 0.25].flatMap { [Double](repeating: $0, count: 4) })
    XCTAssertEqual(b.contiguous().scalars(as: Double.self), expected + expected)
    XCTAssertEqual(b.converted(to: .float32).scalars(as: Float.self), (expected + expected).map { Float($0) })
  }

  /// Copies large enough to be split between threads (rows of a permuted view, and one contiguous
  /// run converted to another dtype) put every element where the view says.
  func testLargeCopiesSplitBetweenThreads() {
    let threads = Parallel.threadCount
    Parallel.setThreadCount(2)
    defer { Parallel.setThreadCount(threads) }
    let shape = [16, 3, 33, 35], count = shape.reduce(1, *)
    let x = Tensor((0..<count).map(Double.init), shape: shape)
    let p = permute(x, [1, 0, 3, 2]).contiguous().scalars(as: Double.self)
    var expected = [Double](repeating: 0, count: count), k = 0
    for c in 0..<3 {
      for n in 0..<16 {
        for w in 0..<35 {
          for h in 0..<33 {
            expected[k] = Double(((n * 3 + c) * 33 + h) * 35 + w)
            k += 1
          }
        }
      }
    }
    XCTAssertEqual(p, expected)
    XCTAssertEqual(x.converted(to: .float32).scalars(as: Float.self), (0..<count).map(Float.init))
  }

  func testConversionBetweenDtypes() {
    let x = Tensor([0.1, 1e10, -3] as [Double], shape: [3])
    let f = x.converted(to: .float32)
    XCTAssertEqual(f.dtype, .float32)
    XCTAssertEqual(f.scalars(as: Float.self), [0.1, 1e10, -3])
    XCTAssertEqual(f.converted(to: .float64).scalars(as: Double.self), [Double(Float(0.1)), 1e10, -3])
  }

  func testMisuseNamesShapes() {
    assertStops(withMessageContaining: ["concatenate: shapes [[2, 3], [2, 4]]", "do not fit along axis 0"], in: self) {
      _ = concatenate([Tensor(zeros: [2, 3]), Tensor(zeros: [2, 4])], alongAxis: 0)
    }
  }

  func testReshapeMisuseNamesShapes() {
    assertStops(withMessageContaining: ["reshaped: cannot reshape [2, 3, 4] (24 elements) to [5, 5]"], in: self) {
      _ = reshape(Tensor(zeros: [2, 3, 4]), to: [5, 5])
    }
  }
}
