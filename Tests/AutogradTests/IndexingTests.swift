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
