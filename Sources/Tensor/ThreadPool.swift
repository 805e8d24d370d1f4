#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Reprise's one pool of threads: the calling thread and `workerCount` workers share each job.
///
/// Workers spin for a short while after a job before they sleep, so the many short kernels of a
/// training step start on all cores within microseconds instead of waking threads each time. A job
/// started from inside a job runs on the calling thread alone.
///
/// Each thread owns a contiguous block of a job's indices (thread `t` of `T` the indices from
/// `count * t / T` up to `count * (t + 1) / T`), claims them in order, and then helps with the
/// blocks of threads that are behind. Kernels split their data in index order, so a thread keeps
/// touching the same part of every tensor from one kernel to the next: what it wrote stays in its
/// own caches. Where the processor's cores do not share a last-level cache (two dies), a share
/// that moved between threads would cross between the dies for every line; a late thread (a
/// worker waking, a busy core) still loses its work to the others rather than holding them up.
///
/// While ``measuring`` is set, each worker times the indices it runs and the calling thread its
/// waits at the ends of jobs, into counters of their own (``Parallel/measuringWork(_:)``).
final class ThreadPool: @unchecked Sendable {
  private(set) var workerCount = 0
  /// While true, threads count into their ``counters``.
  let measuring = Atomic<Bool>(false)
  /// Per thread, ``cursorStride`` slots apart: nanoseconds running indices (workers), indices run,
  /// those of them taken from another thread's block, and nanoseconds waiting at the ends of jobs
  /// (the calling thread). Each thread writes its own only.
  private let counters: UnsafeMutablePointer<Atomic<Int>>
  /// Cursor and counter slots allocated: `cursorStride` per thread asked for.
  private let slots: Int
  private let generation = Atomic<Int>(0)
  /// The next index of each thread's block, one cache line apart, tagged with the job's generation
  /// (``tagged(_:generation:)``); ``closed`` between jobs.
  private let cursors: UnsafeMutablePointer<Atomic<Int>>
  private let remaining = Atomic<Int>(0)
  /// Threads running an index they claimed: the job's closure may be referenced until this is 0.
  private let active = Atomic<Int>(0)
  private let busy = Atomic<Bool>(false)
  private let stopping = Atomic<Bool>(false)
  private var job: ((_ index: Int, _ thread: Int) -> Void)?
  private var jobCount = 0
  private var mutex = pthread_mutex_t()
  private var condition = pthread_cond_t()
  private var sleepers = 0
  private var threads: [pthread_t] = []

  /// No index can be claimed while a cursor holds this value: its tag is negative.
  private static let closed = Int.min / 2

  /// A cursor's value: the job's generation (its low 31 bits) above a 32-bit index. A thread claims
  /// an index only from a cursor tagged with the generation whose job count it read, so a thread
  /// held up between a claim and reading the count can never take an index of a later job for one
  /// of the job it saw: the tag tells them apart.
  private static func tagged(_ index: Int, generation: Int) -> Int { (generation & 0x7fff_ffff) << 32 | index }

  /// The index bits of a cursor's value.
  private static let indexMask = 0xffff_ffff

  /// Cursors are this many slots apart, so that no two share a cache line.
  private static let cursorStride = 8

  init(workerCount: Int) {
    slots = (workerCount + 1) * ThreadPool.cursorStride
    cursors = .allocate(capacity: slots)
    for i in 0..<slots { (cursors + i).initialize(to: Atomic(ThreadPool.closed)) }
    counters = .allocate(capacity: slots)
    for i in 0..<slots { (counters + i).initialize(to: Atomic(0)) }
    pthread_mutex_init(&mutex, nil)
    pthread_cond_init(&condition, nil)
    // A worker that cannot be started (a thread or memory limit) is left out: the pool runs with
    // the workers it has rather than waiting for ones that do not exist.
    for worker in 0..<workerCount {
      var thread = pthread_t()
      let context = Unmanaged.passRetained(WorkerContext(pool: self, index: worker + 1))
      let status = pthread_create(&thread, nil, { raw in
        let context = Unmanaged<WorkerContext>.fromOpaque(raw!).takeRetainedValue()
        context.pool.workerLoop(thread: context.index)
        return nil
      }, context.toOpaque())
      guard status == 0 else {
        context.release()
        break
      }
      threads.append(thread)
    }
    self.workerCount = threads.count
  }

  deinit {
    cursors.deinitialize(count: slots)
    cursors.deallocate()
    counters.deinitialize(count: slots)
    counters.deallocate()
  }

  /// Stops the workers (after any running job) and waits for them.
  func shutdown() {
    stopping.store(true, ordering: .sequentiallyConsistent)
    generation.add(1, ordering: .sequentiallyConsistent)
    pthread_mutex_lock(&mutex)
    pthread_cond_broadcast(&condition)
    pthread_mutex_unlock(&mutex)
    for thread in threads { pthread_join(thread, nil) }
    threads = []
  }

  /// Runs `body(index, thread)` for every index in `0..<count` across the calling thread (thread 0)
  /// and the workers (threads 1 to `workerCount`), and returns when all have finished.
  func run(_ count: Int, _ body: (_ index: Int, _ thread: Int) -> Void) {
    guard count > 1, workerCount > 0,
      busy.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent).exchanged
    else {
      for i in 0..<count { body(i, 0) }
      return
    }
    precondition(count < 1 << 32, "ThreadPool: \(count) indices in one job")
    withoutActuallyEscaping(body) { body in
      job = body
      jobCount = count
      remaining.store(count, ordering: .sequentiallyConsistent)
      let threads = workerCount + 1
      // Only `run` (serialised by `busy`) and `shutdown` change the generation.
      let next = generation.load(ordering: .sequentiallyConsistent) + 1
      for t in 0..<threads {
        cursor(t).pointee.store(ThreadPool.tagged(count * t / threads, generation: next), ordering: .sequentiallyConsistent)
      }
      generation.add(1, ordering: .sequentiallyConsistent)
      pthread_mutex_lock(&mutex)
      if sleepers > 0 { pthread_cond_broadcast(&condition) }
      pthread_mutex_unlock(&mutex)
      work(thread: 0, generation: next)
      let waitStart = measuring.load(ordering: .relaxed) ? monotonicSeconds() : nil
      while remaining.load(ordering: .sequentiallyConsistent) > 0 { sched_yield() }
      for t in 0..<threads { cursor(t).pointee.store(ThreadPool.closed, ordering: .sequentiallyConsistent) }
      // A thread that ran the last index may still hold the closure for an instant after counting
      // it done; it must let go before the closure's non-escaping lifetime ends. Threads that
      // arrive later claim no index and do not touch it.
      while active.load(ordering: .sequentiallyConsistent) > 0 { sched_yield() }
      if let waitStart { add(0, ThreadPool.waiting, ThreadPool.nanoseconds(since: waitStart)) }
      job = nil
    }
    busy.store(false, ordering: .sequentiallyConsistent)
  }

  private func cursor(_ thread: Int) -> UnsafeMutablePointer<Atomic<Int>> {
    cursors + thread * ThreadPool.cursorStride
  }

  /// The slots of a thread's ``counters``.
  private static let (running, indices, taken, waiting) = (0, 1, 2, 3)

  /// Adds `value` to `thread`'s counter `slot`; only that thread calls this, so a load and a store suffice.
  private func add(_ thread: Int, _ slot: Int, _ value: Int) {
    let counter = counters + thread * ThreadPool.cursorStride + slot
    counter.pointee.store(counter.pointee.load(ordering: .relaxed) + value, ordering: .relaxed)
  }

  /// Each thread's counters: nanoseconds running indices (workers; 0 for the calling thread),
  /// indices run, those of them taken from another thread's block, and nanoseconds waiting for
  /// other threads at the ends of jobs (the calling thread; 0 for workers). Read them between jobs:
  /// a job's end orders its threads' counts before `run` returns.
  func counts() -> [(running: Int, indices: Int, taken: Int, waiting: Int)] {
    (0...workerCount).map { t in
      func value(_ slot: Int) -> Int { (counters + t * ThreadPool.cursorStride + slot).pointee.load(ordering: .relaxed) }
      return (value(ThreadPool.running), value(ThreadPool.indices), value(ThreadPool.taken), value(ThreadPool.waiting))
    }
  }

  /// Zeroes every thread's counters. Call between jobs.
  func resetCounts() {
    for i in 0..<slots { (counters + i).pointee.store(0, ordering: .relaxed) }
  }

  /// Nanoseconds since `start` (``monotonicSeconds()``), for the counters.
  private static func nanoseconds(since start: Double) -> Int { Int(((monotonicSeconds() - start) * 1e9).rounded()) }

  /// Claims and runs the indices of the job of `generation`, those of `thread`'s block first, then
  /// those left in the other blocks, until none is left or a later job has begun.
  private func work(thread: Int, generation g: Int) {
    // Read after the generation: if this is not its job's count, that job is over and every
    // cursor is closed or tagged with a later generation.
    let count = jobCount, threads = workerCount + 1, tag = ThreadPool.tagged(0, generation: g)
    for b in 0..<threads {
      let block = (thread + b) % threads
      while true {
        // Compare-and-exchange rather than add: a cursor of another generation is left as it is,
        // where an addition would take an index of that job away from the threads that run it.
        let claimed = cursor(block).pointee.load(ordering: .sequentiallyConsistent)
        guard claimed & ~ThreadPool.indexMask == tag else { return }
        let i = claimed & ThreadPool.indexMask
        guard i < count * (block + 1) / threads else { break }
        guard
          cursor(block).pointee.compareExchange(
            expected: claimed, desired: claimed + 1, ordering: .sequentiallyConsistent
          ).exchanged
        else { continue }
        active.add(1, ordering: .sequentiallyConsistent)
        // The calling thread's time is the measurement's own but for its waits: it is not timed here.
        let timing = measuring.load(ordering: .relaxed), start = timing && thread > 0 ? monotonicSeconds() : 0
        do {
          let body = job!
          body(i, thread)
        }
        if timing {
          if thread > 0 { add(thread, ThreadPool.running, ThreadPool.nanoseconds(since: start)) }
          add(thread, ThreadPool.indices, 1)
          if block != thread { add(thread, ThreadPool.taken, 1) }
        }
        remaining.subtract(1, ordering: .sequentiallyConsistent)
        active.subtract(1, ordering: .sequentiallyConsistent)
      }
    }
  }

  private func workerLoop(thread: Int) {
    var seen = 0  // the generation at creation: a job or shutdown published before this thread ran is still seen
    while true {
      var spins = 0
      while generation.load(ordering: .sequentiallyConsistent) == seen && spins < 20_000 {
        spins += 1
        if spins % 64 == 0 { sched_yield() }
      }
      if generation.load(ordering: .sequentiallyConsistent) == seen {
        pthread_mutex_lock(&mutex)
        while generation.load(ordering: .sequentiallyConsistent) == seen {
          sleepers += 1
          pthread_cond_wait(&condition, &mutex)
          sleepers -= 1
        }
        pthread_mutex_unlock(&mutex)
      }
      seen = generation.load(ordering: .sequentiallyConsistent)
      if stopping.load(ordering: .sequentiallyConsistent) { return }
      work(thread: thread, generation: seen)
    }
  }
}

/// What a worker thread starts with: its pool and its thread index.
private final class WorkerContext {
  let pool: ThreadPool
  let index: Int
  init(pool: ThreadPool, index: Int) {
    self.pool = pool
    self.index = index
  }
}
