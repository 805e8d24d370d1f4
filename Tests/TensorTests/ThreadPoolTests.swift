#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import XCTest

@testable import TensorModule

final class ThreadPoolTests: XCTestCase {
  /// Every index of a job runs once, on a thread numbered below the pool's thread count, for
  /// counts below, at and above the number of threads.
  func testEveryIndexRunsOnceOnAThreadOfThePool() {
    for threads in [1, 2, 3, 5] {
      let pool = ThreadPool(workerCount: threads - 1)
      defer { pool.shutdown() }
      for count in [0, 1, 2, 3, 7, 64, 1000] {
        let runs = UnsafeMutableBufferPointer<Atomic<Int>>.allocate(capacity: max(count, 1))
        for i in 0..<runs.count { (runs.baseAddress! + i).initialize(to: Atomic(0)) }
        let badThread = Atomic<Bool>(false)
        pool.run(count) { i, thread in
          runs[i].add(1, ordering: .relaxed)
          if !(0..<threads).contains(thread) { badThread.store(true, ordering: .relaxed) }
        }
        let counts = (0..<count).map { runs[$0].load(ordering: .relaxed) }
        XCTAssertEqual(counts, Array(repeating: 1, count: count), "threads \(threads), count \(count)")
        XCTAssertFalse(badThread.load(ordering: .relaxed), "threads \(threads), count \(count)")
        runs.deallocate()
      }
    }
  }

  /// The caller is thread 0 and runs its own block: while the workers' first indices wait for
  /// the caller to finish its block, no worker may take an index of it.
  func testTheCallerRunsItsOwnBlock() {
    let pool = ThreadPool(workerCount: 1)
    defer { pool.shutdown() }
    let count = 16, own = count / 2
    let done = Atomic<Int>(0), foreign = Atomic<Int>(0)
    pool.run(count) { i, thread in
      if i < own {
        if thread != 0 { foreign.add(1, ordering: .relaxed) }
        done.add(1, ordering: .sequentiallyConsistent)
      } else {
        // Bounded, so that a wrong claim order fails the test rather than hanging it.
        var spins = 0
        while done.load(ordering: .sequentiallyConsistent) < own && spins < 50_000_000 { spins += 1 }
      }
    }
    XCTAssertEqual(foreign.load(ordering: .relaxed), 0, "indices of the caller's block ran on a worker")
    XCTAssertEqual(done.load(ordering: .relaxed), own)
  }

  /// A job started from inside a job runs on the thread that started it, as thread 0's indices.
  func testANestedJobRunsOnItsCaller() {
    let pool = ThreadPool(workerCount: 1)
    defer { pool.shutdown() }
    let wrong = Atomic<Int>(0), inner = Atomic<Int>(0)
    pool.run(4) { _, _ in
      let outer = pthread_self()
      pool.run(3) { _, thread in
        inner.add(1, ordering: .relaxed)
        if thread != 0 || pthread_equal(pthread_self(), outer) == 0 { wrong.add(1, ordering: .relaxed) }
      }
    }
    XCTAssertEqual(inner.load(ordering: .relaxed), 12)
    XCTAssertEqual(wrong.load(ordering: .relaxed), 0)
  }
}
