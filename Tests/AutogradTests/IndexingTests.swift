import Reprise
import TestSupport
import XCTest

/// Index tensors, `indexSelect`, `gather` and `embedding` against reference loops, their
/// scatter-add gradients, and indices out of range.
final class IndexingTests: XCTestCase {
  var random = RandomGenerator(seed: 2030)

  func testIndexSelectAlongEachAxis() {
    let x = Tensor(randomNormal: [3, 4, 5], dtype: .float64, using: &random)
    let source = x.scalars(as: Double.self)
    for axis in 0..<3 {
      let indices = IndexTensor([2, 0, 2, 1, 0, 1].map { $0 % x.shape[axis] }, shape: [2, 3])
      let y = indexSelect(x, indices, alongAxis: axis)
      var expectedShape = x.shape
      expectedShape.replaceSubrange(axis...axis, with: [2, 3])
      XCTAssertEqual(y.shape, expectedShape)
      // Reference: output (outer, j, inner) is input (outer, indices[j], inner).
      let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
      var expected: [Double] = []
      for o in 0..<outer { for j in indices.indices { for i in 0..<inner { expected.append(source[(o * x.shape[axis] + j) * inner + i]) } } }
      XCTAssertEqual(y.scalars(as: Double.self), expected, "axis \(axis)")
    }
  }

  func testIndexSelectReadsViewsInPlaceAsTheirContiguousCopies() {
    let base = Tensor(randomNormal: [2, 6, 3, 4], dtype: .float64, using: &random)
    // A window of channels (a feature buffer's), a channel-major layout, and a transposed view.
    let views = [slice(base, 1..<5, alongAxis: 1), permute(permute(base, [1, 0, 2, 3]).contiguous(), [1, 0, 2, 3]), transpose(base, 2, 3)]
    for (v, view) in views.enumerated() {
      for axis in 0..<4 {
        let indices = IndexTensor([view.shape[axis] - 1, 0, view.shape[axis] / 2])
        assertBitIdentical(indexSelect(view, indices, alongAxis: axis), indexSelect(view.contiguous(), indices, alongAxis: axis), "view \(v), axis \(axis)")
      }
    }
  }

  func testGradientsAddRepeatedIndices() {
    let weight = randomLeaf([5, 3], using: &random)
    let indices = IndexTensor([4, 1, 4, 4, 0, 1], shape: [2, 3])
    XCTAssertEqual(embedding(indices, weight).shape, [2, 3, 3])
    assertGradientsCorrect(at: [weight], "embedding") { embedding(indices, weight) }
    let x = randomLeaf([2, 5, 3], using: &random)
    assertGradientsCorrect(at: [x], "indexSelect along 1") { indexSelect(x, IndexTensor([3, 3, 0]), alongAxis: 1) }
    let counts = Variable(Tensor(ones: [5, 2]), requiresGrad: true)
    sum(embedding(IndexTensor([4, 1, 4, 4]), counts)).backward()
    XCTAssertEqual(counts.grad?.scalars(as: Float.self), [0, 0, 1, 1, 0, 0, 0, 0, 3, 3])
  }

  func testIndexAddOfDistinctIndicesEqualsTheReferenceSumIntoZeros() {
    for axis in 0..<3 {
      var shape = [3, 4, 5]
      let indices = IndexTensor([3, 0, 2].map { $0 % shape[axis] })
      shape[axis] = 3
      var g = Tensor(randomNormal: shape, dtype: .float64, using: &random)
      g = g * Tensor(randomBernoulli: shape, probability: 0.7, dtype: .float64, using: &random) * -1  // with -0s
      let result = indexAdd(g, indices, alongAxis: axis, into: [3, 4, 5])
      // Reference: zeros, then each gradient slice added at its index.
      let outer = [3, 4, 5][..<axis].reduce(1, *), inner = [3, 4, 5][(axis + 1)...].reduce(1, *), length = [3, 4, 5][axis]
      var expected = [Double](repeating: 0, count: 60)
      let source = g.scalars(as: Double.self)
      for o in 0..<outer {
        for (j, index) in indices.indices.enumerated() {
          for i in 0..<inner { expected[(o * length + index) * inner + i] += source[(o * 3 + j) * inner + i] }
        }
      }
      XCTAssertEqual(result.scalars(as: Double.self).map(\.bitPattern), expected.map(\.bitPattern), "axis \(axis)")
    }
  }

  func testGatherAsPyTorch() {
    let x = Tensor([1, 2, 3, 4, 5, 6] as [Double], shape: [2, 3])
    XCTAssertEqual(gather(x, IndexTensor([2, 0, 1, 1], shape: [2, 2]), alongAxis: 1).scalars(as: Double.self), [3, 1, 5, 5])
    XCTAssertEqual(gather(x, IndexTensor([1, 0, 1], shape: [1, 3]), alongAxis: 0).scalars(as: Double.self), [4, 2, 6])
    let v = randomLeaf([3, 4, 2], using: &random)
    let indices = IndexTensor([3, 0, 1, 3, 2, 2, 0, 1, 1, 3, 0, 0], shape: [3, 2, 2])
    assertGradientsCorrect(at: [v], "gather") { gather(v, indices, alongAxis: 1) }
  }

  func testIndicesOutOfRangeStop() {
    assertStops(withMessageContaining: ["indexSelect: index 5 at position 1 is out of range 0..<5"], in: self) {
      _ = embedding(IndexTensor([0, 5]), Variable(Tensor(zeros: [5, 2])))
    }
  }
}
