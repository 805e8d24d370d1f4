import Foundation

/// A thread of its own that runs collectives one after another, in the order they were queued.
///
/// Open MPI makes progress on a collective only inside MPI calls, so a non-blocking allreduce
/// started during the backward pass would mostly wait for the final `MPI_Wait`. This thread makes
/// the blocking call instead, while the backward pass goes on on the others. Every collective of
/// the process goes through it while it runs (``Communicator`` sends its blocking calls here too),
/// so the order of collectives is the order they were asked for, the same on every process, and
/// MPI is called from one thread at a time.
final class CommunicationQueue {
  private let condition = NSCondition()
  private var jobs: [() -> Void] = []
  private var stopping = false
  private var thread: Thread?

  init() {
    let thread = Thread { [unowned self] in self.work() }
    thread.name = "reprise-communication"
    self.thread = thread
    thread.start()
  }

  /// Whether the caller is the communication thread.
  var isCurrentThread: Bool { Thread.current == thread }

  /// Queues `job`; it runs after everything queued before it.
  func enqueue(_ job: @escaping () -> Void) {
    condition.lock()
    jobs.append(job)
    condition.signal()
    condition.unlock()
  }

  /// Runs `body` on the communication thread after everything queued before it, and returns its result.
  func perform<R>(_ body: () -> R) -> R {
    withoutActuallyEscaping(body) { body in
      // The job lets go of `body` before it signals, so that nothing holds it when this returns.
      let handoff = Handoff<R>(body)
      enqueue {
        handoff.result = handoff.body!()
        handoff.body = nil
        handoff.done.signal()
      }
      handoff.done.wait()
      return handoff.result!
    }
  }

  /// Finishes the queued jobs and ends the thread.
  func stop() {
    perform {
      condition.lock()
      stopping = true
      condition.unlock()
    }
  }

  private func work() {
    while true {
      condition.lock()
      while jobs.isEmpty { condition.wait() }
      let job = jobs.removeFirst()
      condition.unlock()
      job()
      condition.lock()
      let done = stopping
      condition.unlock()
      if done { return }
    }
  }
}

/// A body to run on the communication thread and its result.
private final class Handoff<R> {
  var body: (() -> R)?
  var result: R?
  let done = DispatchSemaphore(value: 0)
  init(_ body: @escaping () -> R) { self.body = body }
}
