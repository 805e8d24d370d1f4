import XCTest

@testable import TensorModule

final class ParallelTests: XCTestCase {
  /// `shrinkingPieces` covers `0..<total` with `pieces` nonempty pieces, gives each thread the
  /// share of `total` that the pool's blocks of pieces give it, and shrinks the pieces within a
  /// share: the last is never larger than the first, and where a share has room for sizes in
  /// proportion to k, ..., 1 they never grow and each is within one of its proportion.
  func testShrinkingPiecesCutEachThreadsShareSmallerTowardsItsEnd() {
    for threads in 1...4 {
      for total in 1...80 {
        for pieces in 1...min(total, 24) {
          let bounds = Parallel.shrinkingPieces(total, pieces: pieces, threads: threads)
          let context = "total \(total), pieces \(pieces), threads \(threads): \(bounds)"
          XCTAssertEqual(bounds.count, pieces + 1, context)
          XCTAssertEqual(bounds.first, 0, context)
          XCTAssertEqual(bounds.last, total, context)
          XCTAssert(zip(bounds.dropFirst(), bounds).allSatisfy { $0 > $1 }, "an empty piece: \(context)")
          for t in 0..<threads {
            let (p0, p1) = (pieces * t / threads, pieces * (t + 1) / threads), k = p1 - p0
            guard k > 0 else { continue }
            XCTAssertEqual(bounds[p1], total * (t + 1) / threads, "thread \(t)'s share ends elsewhere: \(context)")
            let sizes = (p0..<p1).map { bounds[$0 + 1] - bounds[$0] }
            XCTAssertLessThanOrEqual(sizes.last!, sizes.first!, "thread \(t): \(sizes), \(context)")
            let n = bounds[p1] - bounds[p0], weights = k * (k + 1) / 2
            guard n >= 2 * weights else { continue }
            XCTAssertEqual(sizes, sizes.sorted(by: >), "thread \(t) grows: \(context)")
            for (j, size) in sizes.enumerated() {
              XCTAssertEqual(Double(size), Double(n * (k - j)) / Double(weights), accuracy: 1, "piece \(j): \(context)")
            }
          }
        }
      }
    }
  }

  /// One piece a thread is the pool's own split, and one thread's pieces shrink in proportion to
  /// k, ..., 1: 4, 3, 2 and 1 tenths of 40.
  func testShrinkingPiecesOfOneThreadAndOfOnePieceEach() {
    XCTAssertEqual(Parallel.shrinkingPieces(10, pieces: 2, threads: 2), [0, 5, 10])
    XCTAssertEqual(Parallel.shrinkingPieces(7, pieces: 3, threads: 3), [0, 2, 4, 7])
    XCTAssertEqual(Parallel.shrinkingPieces(40, pieces: 4, threads: 1), [0, 16, 28, 36, 40])
    XCTAssertEqual(Parallel.shrinkingPieces(60, pieces: 4, threads: 2), [0, 20, 30, 50, 60])
  }
}
