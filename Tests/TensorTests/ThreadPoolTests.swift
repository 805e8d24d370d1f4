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

  /// While measuring, each thread counts the indices it ran and those of them from another
  /// thread's block, as the job saw them; a worker times its indices, the calling thread its waits
  /// at the ends of jobs; a job started inside an index is part of it, a job on the calling thread
  /// alone counts no index, and nothing counts before measuring starts.
  func testMeasuringCountsEachThreadsIndices() {
    let pool = ThreadPool(workerCount: 1)
    defer { pool.shutdown() }
    pool.run(8) { _, _ in }
    XCTAssertEqual(pool.counts().map(\.indices), [0, 0], "counted without measuring")
    pool.measuring.store(true, ordering: .sequentiallyConsistent)
    let count = 16, own = count / 2, spin = 20_000
    // Per thread t: the indices it ran, ran(t), and those of them from the other's block, took(t).
    let slots = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: 4)
    for i in 0..<4 { (slots + i).initialize(to: Atomic(0)) }
    defer { slots.deallocate() }
    func ran(_ t: Int) -> UnsafeMutablePointer<Atomic<Int>> { slots + t }
    func took(_ t: Int) -> UnsafeMutablePointer<Atomic<Int>> { slots + 2 + t }
    let inner = Atomic<Int>(0)
    pool.run(count) { i, thread in
      ran(thread).pointee.add(1, ordering: .relaxed)
      if (i < own) != (thread == 0) { took(thread).pointee.add(1, ordering: .sequentiallyConsistent) }
      // The worker's indices wait (bounded) until the caller has taken one of them, so that one is taken.
      var spins = 0
      while thread == 1 && took(0).pointee.load(ordering: .sequentiallyConsistent) == 0 && spins < 50_000_000 { spins += 1 }
      busyWait(nanoseconds: spin)
      pool.run(3) { _, _ in inner.add(1, ordering: .relaxed) }
    }
    // The worker's last index outlasts the caller's: the caller waits for it.
    pool.run(2) { i, thread in
      if (i == 0) != (thread == 0) { took(thread).pointee.add(1, ordering: .relaxed) }
      if thread == 1 { busyWait(nanoseconds: 10 * spin) }
    }
    pool.run(1) { _, _ in busyWait(nanoseconds: spin) }
    pool.measuring.store(false, ordering: .sequentiallyConsistent)
    pool.run(4) { _, _ in }
    let counts = pool.counts()
    XCTAssertEqual(inner.load(ordering: .relaxed), 3 * count)
    XCTAssertEqual(counts.map(\.indices).reduce(0, +), count + 2)
    XCTAssertEqual(counts.map(\.taken), [took(0).pointee.load(ordering: .relaxed), took(1).pointee.load(ordering: .relaxed)])
    XCTAssertGreaterThan(counts[0].taken, 0, "the caller took none of the worker's indices")
    XCTAssertEqual(counts[0].running, 0, "the calling thread's indices are timed")
    XCTAssertGreaterThanOrEqual(counts[1].running, ran(1).pointee.load(ordering: .relaxed) * spin)
    XCTAssertEqual(counts[1].waiting, 0)
    if counts[1].indices == ran(1).pointee.load(ordering: .relaxed) + 1 {
      // The worker ran the slow index of the second job, so the caller waited for most of it.
      XCTAssertGreaterThanOrEqual(counts[0].waiting, 5 * spin)
    }
    pool.resetCounts()
    XCTAssertEqual(pool.counts().map(\.running), [0, 0])
  }

  /// `Parallel.measuringWork` returns its body's result, one entry per thread, the jobs' indices,
  /// and, for the calling thread, the whole time but its waits.
  func testMeasuringWorkReportsEveryThread() {
    let (value, work) = Parallel.measuringWork { () -> Int in
      Parallel.run(10) { _ in busyWait(nanoseconds: 10_000) }
      return 42
    }
    XCTAssertEqual(value, 42)
    XCTAssertEqual(work.busySeconds.count, Parallel.threadCount)
    XCTAssertEqual(work.indices.reduce(0, +), Parallel.threadCount > 1 ? 10 : 0)
    XCTAssertEqual(work.busySeconds[0], work.seconds - work.waitingSeconds, accuracy: 1e-12)
    XCTAssertGreaterThanOrEqual(work.totalBusySeconds, 10 * 10e-6)
    XCTAssert(work.busyFraction > 0 && work.busyFraction <= 1)
    var sum = PoolWork(threads: 1)
    sum += work
    sum += work
    XCTAssertEqual(sum.indices, work.indices.map { 2 * $0 })
    XCTAssertEqual(sum.seconds, 2 * work.seconds, accuracy: 1e-12)
  }
}

/// Spins for at least `nanoseconds` on the monotonic clock.
private func busyWait(nanoseconds: Int) {
  let end = monotonicSeconds() + Double(nanoseconds) * 1e-9
  while monotonicSeconds() < end {}
}
