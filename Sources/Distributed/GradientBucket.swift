import CMPI
import Foundation
import MPIShim
import Reprise

/// How the reduction of gradients overlaps the backward pass.
public enum GradientOverlap: String, CaseIterable, Sendable {
  /// A communication thread reduces each bucket as soon as its gradients are complete, while
  /// the backward pass goes on (the default).
  case thread
  /// Each complete bucket starts a non-blocking allreduce, which the backward pass advances by
  /// testing it between its operations.
  case polling
  /// Every bucket is reduced after the backward pass.
  case none
}

/// Consecutive gradients of one dtype reduced in one allreduce, in a buffer of their own: a
/// few MiB per call amortise the latency of a collective without waiting long for a bucket to fill.
final class GradientBucket {
  /// The parameters' positions in ``DataParallel``'s list, in the order they sit in the buffer.
  let members: [Int]
  /// Each member's byte offset in the buffer.
  let offsets: [Int]
  let dtype: DType
  let buffer: UnsafeMutableRawBufferPointer
  /// How many members have their gradient in the buffer this step.
  var filled = 0
  /// Whether this step's reduction has been started.
  var started = false
  private var request: MPI_Request?
  private var done: DispatchSemaphore?

  init(members: [Int], parameters: [Variable]) {
    self.members = members
    dtype = parameters[members[0]].dtype
    var offset = 0
    offsets = members.map { i in
      defer { offset += parameters[i].value.count * parameters[i].dtype.byteCount }
      return offset
    }
    require(offset / dtype.byteCount <= Int(Int32.max), "DataParallel: a bucket of \(offset) bytes has more elements than MPI counts")
    buffer = .allocate(byteCount: max(offset, 1), alignment: 64)
  }

  deinit { buffer.deallocate() }

  /// Copies member `slot`'s gradient into the buffer; zeros for a parameter this step did not reach.
  func fill(_ slot: Int, from parameter: Variable) {
    let size = parameter.value.count * dtype.byteCount, destination = buffer.baseAddress! + offsets[slot]
    if let grad = parameter.grad {
      grad.withUnsafeBytes { destination.copyMemory(from: $0.baseAddress!, byteCount: size) }
    } else {
      destination.initializeMemory(as: UInt8.self, repeating: 0, count: size)
    }
    filled += 1
  }

  var isFull: Bool { filled == members.count }

  /// Starts the reduction of the buffer in the way `overlap` says.
  func start(_ communicator: Communicator, _ overlap: GradientOverlap) {
    started = true
    let (buffer, dtype) = (self.buffer, self.dtype)
    switch overlap {
    case .thread:
      let done = DispatchSemaphore(value: 0)
      self.done = done
      communicator.queue!.enqueue {
        // A blocking allreduce spins while it waits for the other processes, taking a core from
        // the backward pass; testing a non-blocking one and yielding between tests does not.
        var request = Self.startReduction(buffer, dtype, communicator)
        var flag: Int32 = 0
        while request != nil {
          MPI_Test(&request, &flag, reprise_mpi_status_ignore())
          if flag != 0 { break }
          usleep(20)
        }
        done.signal()
      }
    case .polling:
      request = Self.startReduction(buffer, dtype, communicator)
    case .none:
      communicator.sumInPlace(buffer, dtype: dtype)
    }
  }

  /// Starts a non-blocking sum of `buffer` across the processes; `nil` when there is nothing to add.
  private static func startReduction(_ buffer: UnsafeMutableRawBufferPointer, _ dtype: DType, _ communicator: Communicator) -> MPI_Request? {
    guard communicator.size > 1 else { return nil }
    var request = reprise_mpi_request_null()
    let status = MPI_Iallreduce(
      reprise_mpi_in_place(), buffer.baseAddress, Int32(buffer.count / dtype.byteCount), dtype == .float32 ? reprise_mpi_float() : reprise_mpi_double(),
      reprise_mpi_sum(), reprise_mpi_comm_world(), &request)
    if status != MPI_SUCCESS { communicator.abort("MPI_Iallreduce failed: \(Communicator.errorText(status))") }
    return request
  }

  /// Whether this step's reduction has completed, without waiting: for a thread's reduction, the
  /// signal is taken here and `finish` does not wait for it again.
  func isComplete() -> Bool {
    guard started else { return false }
    if let done {
      guard done.wait(timeout: .now()) == .success else { return false }
      self.done = nil
      return true
    }
    return test()
  }

  /// Lets MPI advance a non-blocking reduction; true once it is complete.
  @discardableResult
  func test() -> Bool {
    guard request != nil else { return true }
    var flag: Int32 = 0
    MPI_Test(&request, &flag, reprise_mpi_status_ignore())
    if flag != 0 { request = nil }
    return flag != 0
  }

  /// Waits for the reduction and writes the summed gradients back to the parameters.
  func finish(into parameters: [Variable]) {
    if request != nil { MPI_Wait(&request, reprise_mpi_status_ignore()) }
    done?.wait()
    (request, done, filled, started) = (nil, nil, 0, false)
    for (slot, i) in members.enumerated() {
      let p = parameters[i], source = buffer.baseAddress! + offsets[slot]
      var grad = p.grad ?? Tensor(zeros: p.shape, dtype: p.dtype)
      grad.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: source, byteCount: $0.count) }
      p.grad = grad
    }
  }
}
