import Reprise
import XCTest

final class AllocatorTests: XCTestCase {
  func testLiveAndPeakBytesFollowTensors() {
    Allocator.releaseCache()  // so that no cached larger buffer serves these requests
    let base = Allocator.liveBytes
    Allocator.resetPeak()
    var a: Tensor? = Tensor(zeros: [1024, 256])  // 1 MiB of Float32
    XCTAssertEqual(Allocator.liveBytes - base, 1 << 20)
    var b: Tensor? = Tensor(zeros: [512, 256])
    XCTAssertEqual(Allocator.liveBytes - base, 3 << 19)
    a = nil
    XCTAssertEqual(Allocator.liveBytes - base, 1 << 19)
    XCTAssertEqual(Allocator.peakBytes - base, 3 << 19)
    b = nil
    XCTAssertEqual(Allocator.liveBytes, base)
    Allocator.resetPeak()
    XCTAssertEqual(Allocator.peakBytes, base)
    _ = (a, b)
  }

  func testFreedBuffersAreReused() {
    Allocator.releaseCache()
    var first: Tensor? = Tensor(zeros: [3000])
    first = nil
    let cached = Allocator.cachedBytes
    XCTAssertGreaterThanOrEqual(cached, 12000)
    let second = Tensor(zeros: [2990])  // the same size class: the cached buffer comes back
    XCTAssertEqual(Allocator.cachedBytes, 0)
    XCTAssertEqual(second.count, 2990)
    Allocator.releaseCache()
    XCTAssertEqual(Allocator.cachedBytes, 0)
    _ = first
  }

  /// A request with no cached buffer of its class takes the smallest cached one up to twice its size.
  func testNeighbouringSizesShareCachedBuffers() {
    Allocator.releaseCache()
    var big: Tensor? = Tensor(zeros: [1000])  // 4000 bytes
    big = nil
    let cached = Allocator.cachedBytes
    let before = Allocator.liveBytes
    let small = Tensor(zeros: [600])  // 2400 bytes: served by the cached 4000-byte buffer
    XCTAssertEqual(Allocator.cachedBytes, 0)
    XCTAssertEqual(Allocator.liveBytes - before, cached, "charged for the buffer it holds")
    let tiny = Tensor(zeros: [100])  // 400 bytes: nothing cached within twice its size
    XCTAssertEqual(Allocator.cachedBytes, 0)
    _ = (big, small, tiny)
  }

  /// A freed large buffer serves smaller requests by being cut into pieces, and the pieces, freed,
  /// merge again to serve a request as large as the first: no fresh memory is mapped either time.
  func testLargeBuffersAreCarvedAndMerged() {
    Allocator.releaseCache()
    var whole: Tensor? = Tensor(zeros: [2 << 20])  // 8 MiB
    whole = nil
    XCTAssertEqual(Allocator.cachedBytes, 8 << 20)
    let misses = Allocator.systemAllocations, before = Allocator.liveBytes
    var first: Tensor? = Tensor(repeating: 1, shape: [3 << 18])  // 3 MiB
    var second: Tensor? = Tensor(repeating: 2, shape: [5 << 18])  // 5 MiB
    XCTAssertEqual(Allocator.systemAllocations, misses, "both carved from the cached 8 MiB")
    XCTAssertEqual(Allocator.cachedBytes, 0)
    XCTAssertEqual(Allocator.liveBytes - before, 8 << 20)
    XCTAssertEqual(first!.scalars(as: Float.self), [Float](repeating: 1, count: 3 << 18), "the pieces do not overlap")
    XCTAssertEqual(second!.scalars(as: Float.self), [Float](repeating: 2, count: 5 << 18))
    first = nil
    second = nil
    XCTAssertEqual(Allocator.cachedBytes, 8 << 20)
    whole = Tensor(zeros: [2 << 20])
    XCTAssertEqual(Allocator.systemAllocations, misses, "the merged pieces serve 8 MiB again")
    XCTAssertEqual(Allocator.cachedBytes, 0)
    Allocator.releaseCache()
    _ = (whole, first, second)
  }

  /// Views share storage: slicing and permuting allocate nothing.
  func testViewsAllocateNothing() {
    let x = Tensor(zeros: [64, 64])
    let before = Allocator.liveBytes
    let views = [transpose(x), slice(x, 3..<10, alongAxis: 0), reshape(x, to: [4096]), broadcast(x, to: [2, 64, 64])]
    XCTAssertEqual(Allocator.liveBytes, before)
    XCTAssertEqual(views.count, 4)
  }

  /// A large request that no free range holds is assembled, on Linux, from the free ranges' whole
  /// huge-page blocks, moved into its mapping: only the rest of it is fresh memory, and the cache
  /// gives those blocks up.
  func testLargeRequestsAreAssembledFromFreeRanges() throws {
    #if os(Linux)
    Allocator.releaseCache()
    var first: Tensor? = Tensor(zeros: [6 << 18])  // 6 MiB each, 6 MiB between them
    let between = Tensor(zeros: [6 << 18])
    var second: Tensor? = Tensor(zeros: [6 << 18])
    first = nil
    second = nil
    XCTAssertEqual(Allocator.cachedBytes, 12 << 20)
    let fresh = Allocator.systemBytes
    // 14 MiB: more than any free range. Each 6 MiB range holds two or three aligned 2 MiB blocks.
    let whole = Tensor(repeating: 3, shape: [14 << 18])
    let moved = (12 << 20) - Allocator.cachedBytes
    XCTAssertGreaterThanOrEqual(moved, 8 << 20, "at least two blocks from each range")
    XCTAssertEqual(moved % (2 << 20), 0, "whole blocks")
    XCTAssertEqual(Allocator.systemBytes - fresh, (14 << 20) - moved, "fresh memory only for the rest")
    XCTAssertEqual(whole.scalars(as: Float.self), [Float](repeating: 3, count: 14 << 18))
    XCTAssertEqual(between.scalars(as: Float.self), [Float](repeating: 0, count: 6 << 18), "its neighbours untouched")
    Allocator.releaseCache()
    _ = (first, second)
    #else
    throw XCTSkip("pages move between mappings on Linux only")
    #endif
  }

  /// A request the cache cannot serve evicts cached buffers first: live plus cached bytes stay
  /// within the footprint limit, the high-water mark of live bytes plus a thirty-second of it.
  func testCacheKeepsTheFootprintWithinItsLimit() {
    Allocator.releaseCache()
    // A cached buffer larger than the headroom the limit leaves above the next working set.
    let headroom = (Allocator.highWaterBytes + (64 << 20)) / 32
    let cachedCount = (headroom + (1 << 20)) / 4
    var cached: Tensor? = Tensor(zeros: [cachedCount])
    cached = nil
    let cachedSize = Allocator.cachedBytes
    XCTAssertGreaterThanOrEqual(cachedSize, cachedCount * 4)
    // A new largest working set, 64 MiB above the old mark: the cached buffer cannot serve it,
    // and keeping it would take the footprint past the limit.
    let count = (Allocator.highWaterBytes - Allocator.liveBytes + (64 << 20)) / 4
    let large = Tensor(zeros: [count])
    XCTAssertLessThan(Allocator.cachedBytes, cachedSize, "the cached buffer went back")
    XCTAssertLessThanOrEqual(Allocator.liveBytes + Allocator.cachedBytes, Allocator.footprintLimitBytes)
    XCTAssertEqual(Allocator.footprintLimitBytes, Allocator.highWaterBytes + Allocator.highWaterBytes / 32)
    XCTAssertEqual(large.count, count)
    _ = cached
  }

  /// A buffer that fits within the headroom stays cached when a larger working set arrives.
  func testCacheKeepsWhatFitsTheHeadroom() {
    Allocator.releaseCache()
    var cached: Tensor? = Tensor(zeros: [1 << 16])  // 256 KiB
    cached = nil
    let cachedSize = Allocator.cachedBytes
    XCTAssertEqual(cachedSize, 1 << 18)
    let count = (Allocator.highWaterBytes - Allocator.liveBytes + (64 << 20)) / 4
    let large = Tensor(zeros: [count])
    // 64 MiB more live bytes raise the headroom by 2 MiB: the 256 KiB fits it.
    XCTAssertEqual(Allocator.cachedBytes, cachedSize)
    XCTAssertLessThanOrEqual(Allocator.liveBytes + Allocator.cachedBytes, Allocator.footprintLimitBytes)
    XCTAssertEqual(large.count, count)
    _ = cached
  }
}
