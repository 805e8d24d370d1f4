import CMPI
import Foundation
import MPIShim
import Reprise

/// The processes of a distributed run and the collective operations between them, over MPI
/// (Open MPI): every process calls the same collectives in the same order.
///
/// There is one communicator per process, ``world()``, spanning the processes `mpirun` started.
/// Collectives are called from one thread at a time: the thread that made the communicator, or the
/// communication thread of a ``DataParallel`` trainer while one runs (MPI is initialised with
/// `MPI_THREAD_SERIALIZED`). A failing MPI call ends every process of the run with a message
/// (`MPI_Abort`): a run whose processes disagree cannot go on.
public final class Communicator {
  /// This process's number, from 0 to `size - 1`.
  public let rank: Int
  /// The number of processes.
  public let size: Int
  /// Whether this process is rank 0, the one that writes files and prints.
  public var isRoot: Bool { rank == 0 }
  /// While set, collectives run there, in order with the reductions queued on it.
  private(set) var queue: CommunicationQueue?
  /// The trainers using `queue`; the last one to stop ends its thread.
  private var queueUsers = 0

  /// Starts the communication thread, or counts one more user of the running one.
  func startQueue() {
    if queue == nil { queue = CommunicationQueue() }
    queueUsers += 1
  }

  /// One user fewer of the communication thread; the last one ends it.
  func stopQueue() {
    queueUsers -= 1
    guard queueUsers == 0, let queue else { return }
    queue.stop()
    self.queue = nil
  }

  private init(rank: Int, size: Int) { (self.rank, self.size) = (rank, size) }

  private static let lock = NSLock()
  nonisolated(unsafe) private static var shared: Communicator?

  /// The communicator of all processes of the run, initialising MPI on first use and finalising
  /// it when the program exits.
  ///
  /// A program started without `mpirun` is a run of one process.
  /// - Throws: ``DistributedError/unavailable(_:)`` when MPI cannot start or lacks the thread
  ///   support the communication thread needs.
  public static func world() throws -> Communicator {
    lock.lock()
    defer { lock.unlock() }
    if let shared { return shared }
    var provided: Int32 = 0
    var status = MPI_Init_thread(nil, nil, Int32(MPI_THREAD_SERIALIZED), &provided)
    guard status == MPI_SUCCESS else { throw DistributedError.unavailable("MPI_Init_thread failed: \(errorText(status))") }
    guard provided >= Int32(MPI_THREAD_SERIALIZED) else {
      throw DistributedError.unavailable("this MPI library gives thread level \(provided), and a communication thread needs MPI_THREAD_SERIALIZED")
    }
    MPI_Comm_set_errhandler(reprise_mpi_comm_world(), reprise_mpi_errors_return())
    var rank: Int32 = 0, size: Int32 = 0
    status = MPI_Comm_rank(reprise_mpi_comm_world(), &rank)
    if status == MPI_SUCCESS { status = MPI_Comm_size(reprise_mpi_comm_world(), &size) }
    guard status == MPI_SUCCESS else { throw DistributedError.unavailable("MPI_Comm_rank failed: \(errorText(status))") }
    atexit {
      var finalized: Int32 = 0
      MPI_Finalized(&finalized)
      if finalized == 0 { MPI_Finalize() }
    }
    shared = Communicator(rank: Int(rank), size: Int(size))
    return shared!
  }

  // MARK: Collectives

  /// Replaces `tensor` by the element-wise sum of every process's `tensor` (same shape and dtype
  /// on all).
  public func allreduce(_ tensor: inout Tensor) {
    let dtype = tensor.dtype
    tensor.withUnsafeMutableBytes { bytes in sumInPlace(bytes, dtype: dtype) }
  }

  /// Replaces each element of `values` by its sum over the processes.
  public func allreduce(_ values: inout [Double]) {
    values.withUnsafeMutableBytes { sumInPlace($0, datatype: reprise_mpi_double(), count: $0.count / 8) }
  }

  /// Replaces each element of `values` by its sum over the processes.
  public func allreduce(_ values: inout [Int]) {
    var wide = values.map(Int64.init)
    wide.withUnsafeMutableBytes { sumInPlace($0, datatype: reprise_mpi_int64(), count: $0.count / 8) }
    values = wide.map(Int.init)
  }

  /// Replaces `tensor` on every process by rank `root`'s (the same shape and dtype on all).
  public func broadcast(_ tensor: inout Tensor, from root: Int = 0) {
    tensor.withUnsafeMutableBytes { bytes in broadcastBytes(bytes, from: root) }
  }

  /// Replaces `values` on every process by rank `root`'s; the counts may differ before the call.
  public func broadcast(_ values: inout [Int], from root: Int = 0) {
    var count = [Int64(values.count)]
    count.withUnsafeMutableBytes { broadcastBytes($0, from: root) }
    var wide = values.map(Int64.init)
    if rank != root { wide = Array(repeating: 0, count: Int(count[0])) }
    wide.withUnsafeMutableBytes { broadcastBytes($0, from: root) }
    values = wide.map(Int.init)
  }

  /// Every process's `values` in rank order (each process gives the same number of values).
  public func allgather(_ values: [Int]) -> [[Int]] {
    let send = values.map(Int64.init)
    var received = [Int64](repeating: 0, count: send.count * size)
    run("MPI_Allgather") {
      send.withUnsafeBytes { s in
        received.withUnsafeMutableBytes { r in
          MPI_Allgather(
            s.baseAddress, Int32(send.count), reprise_mpi_int64(), r.baseAddress, Int32(send.count), reprise_mpi_int64(),
            reprise_mpi_comm_world())
        }
      }
    }
    return (0..<size).map { r in received[r * send.count..<(r + 1) * send.count].map(Int.init) }
  }

  /// Checks that every process has the same `values`, which `names` name one by one.
  ///
  /// - Throws: ``DistributedError/mismatch(_:)`` naming the first value in which a process
  ///   differs from rank 0, on every process alike.
  public func checkAgreement(_ values: [Int], names: [String]) throws {
    require(values.count == names.count, "checkAgreement: \(values.count) values and \(names.count) names")
    let all = allgather(values)
    for (r, theirs) in all.enumerated() {
      if let i = theirs.indices.first(where: { theirs[$0] != all[0][$0] }) {
        throw DistributedError.mismatch("rank \(r) has \(names[i]) \(theirs[i]), rank 0 \(all[0][i])")
      }
    }
  }

  /// Returns when every process has called it.
  public func barrier() {
    run("MPI_Barrier") { MPI_Barrier(reprise_mpi_comm_world()) }
  }

  /// Ends every process of the run with `code` after printing `message` on standard error.
  public func abort(_ message: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("reprise: rank \(rank) of \(size): \(message)\n".utf8))
    MPI_Abort(reprise_mpi_comm_world(), code)
    exit(code)
  }

  // MARK: Primitives

  func sumInPlace(_ bytes: UnsafeMutableRawBufferPointer, dtype: DType) {
    let (datatype, width) = dtype == .float32 ? (reprise_mpi_float(), 4) : (reprise_mpi_double(), 8)
    sumInPlace(bytes, datatype: datatype, count: bytes.count / width)
  }

  private func sumInPlace(_ bytes: UnsafeMutableRawBufferPointer, datatype: MPI_Datatype?, count: Int) {
    guard size > 1, count > 0 else { return }
    // Counts are 32-bit in MPI: a larger buffer goes in pieces.
    let width = bytes.count / count, piece = Int(Int32.max) / width * width
    for start in stride(from: 0, to: bytes.count, by: piece) {
      let n = min(piece, bytes.count - start) / width
      run("MPI_Allreduce") {
        MPI_Allreduce(reprise_mpi_in_place(), bytes.baseAddress! + start, Int32(n), datatype, reprise_mpi_sum(), reprise_mpi_comm_world())
      }
    }
  }

  private func broadcastBytes(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) {
    require((0..<size).contains(root), "broadcast: root \(root) is not a rank of \(size)")
    guard size > 1, bytes.count > 0 else { return }
    let piece = Int(Int32.max)
    for start in stride(from: 0, to: bytes.count, by: piece) {
      let n = min(piece, bytes.count - start)
      run("MPI_Bcast") { MPI_Bcast(bytes.baseAddress! + start, Int32(n), reprise_mpi_byte(), Int32(root), reprise_mpi_comm_world()) }
    }
  }

  /// Runs one MPI call, on the communication thread when one runs, and ends the run if it fails.
  func run(_ name: String, _ call: () -> Int32) {
    let status: Int32
    if let queue, !queue.isCurrentThread {
      status = withoutActuallyEscaping(call) { call in queue.perform(call) }
    } else {
      status = call()
    }
    if status != MPI_SUCCESS { abort("\(name) failed: \(Self.errorText(status))") }
  }

  static func errorText(_ status: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
    var length: Int32 = 0
    MPI_Error_string(status, &buffer, &length)
    return String(cString: buffer)
  }
}

/// Why distributed training cannot run.
public enum DistributedError: Error, CustomStringConvertible {
  /// MPI could not be started as needed.
  case unavailable(String)
  /// The processes of the run disagree (data, configuration, model).
  case mismatch(String)
  /// The run's settings do not fit the number of processes.
  case configuration(String)

  /// A one-line description.
  public var description: String {
    switch self {
    case .unavailable(let why): "MPI is not available: \(why)"
    case .mismatch(let why): "the processes of the run disagree: \(why)"
    case .configuration(let why): why
    }
  }
}
