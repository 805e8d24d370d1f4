#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Reprise's one pool of threads: the calling thread and `workerCount` workers share each job.
///
/// Workers spin for a short while after a job before they sleep, so the many short kernels of a
/// training step start on all cores within microseconds instead of waking threads each time. A job
/// started from inside a job runs on the calling thread alone.
final class ThreadPool: @unchecked Sendable {
  private(set) var workerCount = 0
  private let generation = Atomic<Int>(0)
  private let nextIndex = Atomic<Int>(ThreadPool.closed)
  private let remaining = Atomic<Int>(0)
  /// Threads running an index they claimed: the job's closure may be referenced until this is 0.
  private let active = Atomic<Int>(0)
  private let busy = Atomic<Bool>(false)
  private let stopping = Atomic<Bool>(false)
  private var job: ((Int) -> Void)?
  private var jobCount = 0
  private var mutex = pthread_mutex_t()
  private var condition = pthread_cond_t()
  private var sleepers = 0
  private var threads: [pthread_t] = []

  /// No index can be claimed while the counter holds this value.
  private static let closed = Int.max / 2

  init(workerCount: Int) {
    pthread_mutex_init(&mutex, nil)
    pthread_cond_init(&condition, nil)
    // A worker that cannot be started (a thread or memory limit) is left out: the pool runs with
    // the workers it has rather than waiting for ones that do not exist.
    for _ in 0..<workerCount {
      var thread = pthread_t()
      let context = Unmanaged.passRetained(self)
      let status = pthread_create(&thread, nil, { raw in
        let pool = Unmanaged<ThreadPool>.fromOpaque(raw!).takeRetainedValue()
        pool.workerLoop()
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

  /// Runs `body(0) ..< body(count - 1)` across the calling thread and the workers and returns when
  /// all have finished.
  func run(_ count: Int, _ body: (Int) -> Void) {
    guard count > 1, workerCount > 0,
      busy.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent).exchanged
    else {
      for i in 0..<count { body(i) }
      return
    }
    withoutActuallyEscaping(body) { body in
      job = body
      jobCount = count
      remaining.store(count, ordering: .sequentiallyConsistent)
      nextIndex.store(0, ordering: .sequentiallyConsistent)
      generation.add(1, ordering: .sequentiallyConsistent)
      pthread_mutex_lock(&mutex)
      if sleepers > 0 { pthread_cond_broadcast(&condition) }
      pthread_mutex_unlock(&mutex)
      work()
      while remaining.load(ordering: .sequentiallyConsistent) > 0 { sched_yield() }
      nextIndex.store(ThreadPool.closed, ordering: .sequentiallyConsistent)
      // A thread that ran the last index may still hold the closure for an instant after counting
      // it done; it must let go before the closure's non-escaping lifetime ends. Threads that
      // arrive later claim no index and do not touch it.
      while active.load(ordering: .sequentiallyConsistent) > 0 { sched_yield() }
      job = nil
    }
    busy.store(false, ordering: .sequentiallyConsistent)
  }

  /// Claims and runs indices of the current job until none is left.
  private func work() {
    while true {
      let i = nextIndex.add(1, ordering: .sequentiallyConsistent).oldValue
      guard i < jobCount else { return }
      active.add(1, ordering: .sequentiallyConsistent)
      do {
        let body = job!
        body(i)
      }
      remaining.subtract(1, ordering: .sequentiallyConsistent)
      active.subtract(1, ordering: .sequentiallyConsistent)
    }
  }

  private func workerLoop() {
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
      work()
    }
  }
}
