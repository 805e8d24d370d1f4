@testable import TensorModule
import XCTest

/// The allocator's free ranges of mapped memory, on made-up addresses (nothing is dereferenced).
final class FreeRangesTests: XCTestCase {
  private let unit = 1 << 16

  private func address(_ units: Int) -> UnsafeMutableRawPointer {
    UnsafeMutableRawPointer(bitPattern: (1 << 32) + units * unit)!
  }

  /// A request is carved from the start of the smallest range that holds it; the rest stays free.
  func testTakeIsBestFitFromTheStart() {
    var ranges = FreeRanges()
    ranges.insert(address(0), 8 * unit)
    ranges.insert(address(100), 3 * unit)
    ranges.insert(address(200), 5 * unit)
    XCTAssertEqual(ranges.take(4 * unit), address(200), "the 5-unit range is the smallest that fits")
    XCTAssertEqual(ranges.total, 12 * unit)
    XCTAssertEqual(ranges.take(1 * unit), address(204), "the 1-unit rest of that range")
    XCTAssertEqual(ranges.count, 2)
    XCTAssertEqual(ranges.take(3 * unit), address(100))
    XCTAssertNil(ranges.take(9 * unit))
    XCTAssertEqual(ranges.take(8 * unit), address(0))
    XCTAssertEqual(ranges.total, 0)
    XCTAssertEqual(ranges.count, 0)
  }

  /// A range given back merges with a free range ending where it starts and one starting where it ends.
  func testAdjacentRangesMerge() {
    var ranges = FreeRanges()
    ranges.insert(address(0), 2 * unit)
    ranges.insert(address(5), 3 * unit)
    ranges.insert(address(10), 1 * unit)
    XCTAssertEqual(ranges.count, 3)
    ranges.insert(address(2), 3 * unit)  // joins [0, 2) and [5, 8)
    XCTAssertEqual(ranges.count, 2)
    XCTAssertEqual(ranges.total, 9 * unit)
    XCTAssertEqual(ranges.take(8 * unit), address(0), "one range of 8 units now")
    ranges.insert(address(8), 2 * unit)  // joins [10, 11) on its right only
    XCTAssertEqual(ranges.count, 1)
    XCTAssertEqual(ranges.take(3 * unit), address(8))
  }

  /// Giving memory back takes the smallest ranges first and cuts only what is needed off the end of
  /// the last one.
  func testRemoveTakesSmallestRangesFirstAndCutsTheLast() {
    var ranges = FreeRanges()
    ranges.insert(address(0), 10 * unit)
    ranges.insert(address(100), 2 * unit)
    ranges.insert(address(200), 4 * unit)
    let removed = ranges.remove(atLeast: 3 * unit + 1, granule: unit)
    XCTAssertEqual(removed.map(\.0), [address(100), address(202)])
    XCTAssertEqual(removed.map(\.1), [2 * unit, 2 * unit])
    XCTAssertEqual(ranges.total, 12 * unit)
    XCTAssertEqual(ranges.take(2 * unit), address(200), "the kept head of the cut range")
    let rest = ranges.remove(atLeast: 100 * unit, granule: unit)
    XCTAssertEqual(rest.map(\.1), [10 * unit], "everything when asked for more than there is")
    XCTAssertEqual(ranges.total, 0)
  }

  /// Aligned blocks are cut from the smallest ranges first, at most the bytes asked for, in whole
  /// blocks; a range's parts before and after its blocks stay free, and a range holding no whole
  /// block gives none.
  func testRemoveAlignedCutsWholeBlocksAndKeepsTheRest() {
    var ranges = FreeRanges()
    let block = 32 * unit  // 2 MiB
    ranges.insert(address(10), 80 * unit)  // [10, 90): one whole block, [32, 64)
    ranges.insert(address(200), 20 * unit)  // [200, 220): none (192 and 224 lie outside)
    ranges.insert(address(300), 100 * unit)  // [300, 400): [320, 352) and [352, 384)
    let removed = ranges.removeAligned(atMost: 3 * block + unit, alignment: block)
    XCTAssertEqual(removed.map(\.0), [address(32), address(320)], "the smaller range first")
    XCTAssertEqual(removed.map(\.1), [block, 2 * block], "whole blocks up to the bytes asked for")
    XCTAssertEqual(ranges.total, 200 * unit - 3 * block)
    XCTAssertEqual(ranges.count, 5)
    XCTAssertEqual(ranges.take(20 * unit), address(200), "the range without a block is untouched")
    XCTAssertEqual(ranges.take(22 * unit), address(10), "the head of the first range")
    XCTAssertEqual(ranges.take(26 * unit), address(64), "its tail")
    XCTAssertEqual(ranges.take(20 * unit), address(300), "the head of the third")
    XCTAssertEqual(ranges.take(16 * unit), address(384), "its tail")
    XCTAssertEqual(ranges.total, 0)
    XCTAssertEqual(ranges.removeAligned(atMost: block, alignment: block).count, 0)
  }
}
