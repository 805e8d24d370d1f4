import Reprise
import RepriseDistributed
import TestSupport
import XCTest

/// The sampler's parts: disjoint, covering every image of an epoch once, in the single-process order.
final class ShardedSamplerTests: XCTestCase {
  func testPartsCoverEveryImageOnceInTheSingleProcessOrder() throws {
    for (count, batch, size) in [(10, 4, 2), (60, 7, 3), (36, 8, 4), (5, 5, 5), (12, 3, 1)] {
      let samplers = try (0..<size).map { try ShardedSampler(count: count, globalBatchSize: batch, rank: $0, size: size) }
      var seen: [Int] = []
      for step in 0..<samplers[0].stepsPerEpoch {
        let global = samplers[0].globalBatch(step)
        var covered: [Int] = []
        for sampler in samplers {
          XCTAssertEqual(sampler.globalBatch(step), global)
          let part = sampler.part(ofBatchOf: global.count)
          XCTAssertFalse(part.isEmpty, "\(count) images, batch \(batch), \(size) processes: rank \(sampler.rank) has no image")
          covered += part.map { global.lowerBound + $0 }
        }
        XCTAssertEqual(covered, Array(global), "parts of step \(step) are not the batch in order")
        seen += covered
      }
      XCTAssertEqual(seen, Array(0..<count), "\(count) images, batch \(batch), \(size) processes")
    }
  }

  func testBatchesThatWouldLeaveAProcessWithoutImagesAreRefused() {
    XCTAssertThrowsError(try ShardedSampler(count: 100, globalBatchSize: 3, rank: 0, size: 4))
    // 10 images in batches of 4 leave 2 for the last batch of each epoch, fewer than 3 processes.
    XCTAssertThrowsError(try ShardedSampler(count: 10, globalBatchSize: 4, rank: 0, size: 3)) { error in
      XCTAssert("\(error)".contains("the last batch of each epoch has 2"), "\(error)")
    }
  }

  func testEvaluationPartsCoverEveryImageOnce() {
    for (count, size) in [(10, 3), (2, 4), (0, 2), (10000, 7)] {
      let parts = (0..<size).map { ShardedSampler.evaluationPart(count: count, rank: $0, size: size) }
      XCTAssertEqual(parts.flatMap { Array($0) }, Array(0..<count))
    }
  }
}
