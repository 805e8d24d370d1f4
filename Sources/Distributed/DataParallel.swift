import CMPI
import Foundation
import Reprise

/// Data-parallel training: every process holds the whole model, trains on its part of each global
/// batch, and the gradients are summed across processes before the optimiser steps, so every
/// process takes the same step, the one a single process would take on the global batch (with
/// batch normalisation over each part, or over the global batch with `synchronizingBatchNorm`).
///
/// - The parameters and buffers start as rank 0's (broadcast when the trainer is made).
/// - Each process's loss gradient is scaled by its share of the global batch, so the sum of the
///   processes' gradients is the gradient of the global batch's mean loss, even when the parts
///   differ in size.
/// - Gradients are reduced in buckets of about `bucketBytes`, as soon as their last contribution
///   of the backward pass is added (`Variable.backward(seed:onGradientReady:betweenOperations:)`):
///   never while a checkpoint region is replayed, since the replay adds to the parameters it uses,
///   and in the same order on every process (the order rank 0 saw in its first step).
/// - A parameter that a step did not reach on a process is reduced as zeros there, so no process
///   waits for another; one that no process reached keeps no gradient, as in one process.
/// - Without synchronized batch normalisation, the running statistics are averaged across the
///   processes after each step, so that they agree.
public final class DataParallel {
  /// The processes.
  public let communicator: Communicator
  /// The model being trained.
  public let model: any Layer
  /// How the reduction overlaps the backward pass.
  public let overlap: GradientOverlap
  /// Whether batch normalisation uses the statistics of the global batch.
  public let synchronizesBatchNorm: Bool
  /// Seconds of the last step spent after the backward pass waiting for reductions to finish: the
  /// communication the backward pass did not hide.
  public private(set) var lastReductionWait = 0.0
  /// The fraction of the last step's gradient bytes whose reduction had completed when the
  /// backward pass ended: the communication the backward pass hid.
  public private(set) var lastHiddenFraction = 0.0

  /// The size of a reduction bucket unless told otherwise: small enough that a model of a few
  /// MiB of gradients has several buckets to overlap with its backward pass, large enough that a
  /// bucket's transfer outweighs a collective's latency.
  public static let defaultBucketBytes = 1 << 20
  /// The overlap unless told otherwise: the communication thread, which hid the most in
  /// docs/distributed.md's measurements.
  public static let defaultOverlap = GradientOverlap.thread

  private let parameters: [Variable]
  private let bucketBytes: Int
  private var buckets: [GradientBucket] = []
  private var slots: [ObjectIdentifier: (bucket: Int, slot: Int)] = [:]
  private var nextToStart = 0
  /// The order gradients became ready in the first step, for rebuilding the buckets.
  private var readyOrder: [Int]? = []
  private var usesQueue = false

  /// A trainer of `model` across the processes of `communicator`, which broadcasts rank 0's
  /// parameters and buffers to the others.
  ///
  /// - Parameters:
  ///   - model: the same architecture on every process.
  ///   - communicator: the processes.
  ///   - bucketBytes: the size of a reduction bucket (``defaultBucketBytes``, 1 MiB, by default).
  ///   - overlap: how the reduction overlaps the backward pass.
  ///   - synchronizingBatchNorm: normalise with the statistics of the global batch (the
  ///     processes' per-channel sums are added in the forward pass, and those of the gradient in
  ///     the backward pass).
  /// - Throws: ``DistributedError/mismatch(_:)`` when the processes' models differ in their
  ///   parameters' or buffers' shapes.
  public init(
    _ model: any Layer, communicator: Communicator, bucketBytes: Int = defaultBucketBytes, overlap: GradientOverlap = defaultOverlap,
    synchronizingBatchNorm: Bool = false
  ) throws {
    require(bucketBytes > 0, "DataParallel: bucketBytes must be positive")
    (self.model, self.communicator, self.bucketBytes, self.overlap) = (model, communicator, bucketBytes, overlap)
    synchronizesBatchNorm = synchronizingBatchNorm
    parameters = model.parameters
    let state = model.namedParameters + model.namedBuffers
    let shapes = state.flatMap { [$0.variable.value.rank, $0.variable.dtype.byteCount] + $0.variable.shape }
    try communicator.checkAgreement(
      [state.count, shapes.count, shapes.reduce(0) { $0 &* 31 &+ $1 }],
      names: ["parameter and buffer tensors", "dimensions and dtypes", "a checksum of the shapes"])
    for (_, variable) in state { communicator.broadcast(&variable.value, from: 0) }
    buildBuckets(order: Array(parameters.indices.reversed()))
    if overlap == .thread {
      communicator.startQueue()
      usesQueue = true
    }
  }

  deinit {
    if usesQueue { communicator.stopQueue() }
  }

  /// Groups parameters into buckets in `order`, the order their gradients are expected. The last
  /// bucket, whose reduction nothing is left to overlap, holds about a quarter of `bucketBytes`.
  private func buildBuckets(order: [Int]) {
    var groups: [[Int]] = [], current: [Int] = [], bytes = 0
    // From the last gradient to the first, so that the last bucket is the small one.
    for i in order.reversed() {
      let p = parameters[i], size = p.value.count * p.dtype.byteCount
      let limit = groups.isEmpty ? max(1, bucketBytes / 4) : bucketBytes
      if !current.isEmpty && (bytes + size > limit || parameters[current[0]].dtype != p.dtype) {
        groups.append(current.reversed())
        (current, bytes) = ([], 0)
      }
      current.append(i)
      bytes += size
    }
    if !current.isEmpty { groups.append(current.reversed()) }
    buckets = groups.reversed().map { GradientBucket(members: $0, parameters: parameters) }
    slots = [:]
    for (b, bucket) in buckets.enumerated() {
      for (s, i) in bucket.members.enumerated() { slots[ObjectIdentifier(parameters[i])] = (b, s) }
    }
  }

  /// One training step on this process's part of a global batch: forward in training mode,
  /// cross-entropy, backward with the gradients reduced across processes, optimiser update.
  ///
  /// - Parameters:
  ///   - optimizer: the optimiser of ``model``'s parameters, in the same state on every process.
  ///   - images: this process's images, at least one.
  ///   - labels: their labels.
  ///   - globalBatchSize: the number of images of all processes together.
  ///   - labelSmoothing: label smoothing of the cross-entropy.
  ///   - channelSparsity: network slimming's L1 penalty on the batch-norm scales
  ///     (`addChannelSparsityGradient(_:strength:)`), added to the reduced gradients; 0 is none.
  /// - Returns: the global batch's loss and accuracy (before the update), the same on every process.
  @discardableResult
  public func trainStep(
    optimizer: any Optimizer, images: Tensor, labels: [Int], globalBatchSize: Int, labelSmoothing: Double = 0,
    channelSparsity: Double = 0
  ) -> Metrics {
    require(!labels.isEmpty && labels.count <= globalBatchSize, "trainStep: \(labels.count) images of a global batch of \(globalBatchSize)")
    optimizer.zeroGradients()
    // Dropout masks differ between the processes' parts, yet every process keeps the same
    // generator state from step to step, which training checkpoints save.
    var shared = RandomGenerator.global
    let stepSeed = shared.next()  // `shared` is now the state every process keeps after the step.
    if communicator.size > 1 {
      RandomGenerator.global = RandomGenerator(seed: stepSeed &+ UInt64(communicator.rank) &* 0x9E37_79B9_7F4A_7C15)
    }
    let synchronizer = synchronizesBatchNorm ? CommunicatorSynchronizer(communicator) : nil
    let share = Double(labels.count) / Double(globalBatchSize)
    let (loss, logits) = withSynchronizedBatchStatistics(synchronizer) { () -> (Variable, Tensor) in
      let logits = withLearningPhase(.training) { model(Variable(images)) }
      let loss = crossEntropy(logits, labels: labels, labelSmoothing: labelSmoothing)
      backward(loss, seed: share)
      return (loss, logits.value)
    }
    if communicator.size > 1 { RandomGenerator.global = shared }
    // After the reduction: every process adds the same term to the same averaged gradient.
    addChannelSparsityGradient(model, strength: channelSparsity)
    optimizer.step()
    if !synchronizesBatchNorm { averageBuffers() }
    var sums = [loss.value.scalar * Double(labels.count), accuracy(logits, labels: labels) * Double(labels.count), Double(labels.count)]
    communicator.allreduce(&sums)
    return Metrics(loss: sums[0] / sums[2], accuracy: sums[1] / sums[2])
  }

  /// Backpropagates from `loss` seeded with `seed`, reducing every parameter's gradient across
  /// the processes: afterwards each parameter's `grad` is the sum of the processes'.
  ///
  /// For training loops of one's own: seed each process's loss with its share of the global
  /// batch (its images over all images) when the loss is a mean.
  public func backward(_ loss: Variable, seed: Double) {
    let pending = { [unowned self] in
      for bucket in buckets[..<nextToStart] { if !bucket.test() { break } }
    }
    loss.backward(
      seed: Tensor(repeating: seed, shape: loss.shape, dtype: loss.dtype),
      onGradientReady: { [unowned self] leaf in ready(leaf) },
      betweenOperations: overlap == .polling ? pending : nil)
    let waitStarted = Date()
    let hidden = buckets.reduce(0) { $0 + ($1.isComplete() ? $1.buffer.count : 0) }
    lastHiddenFraction = Double(hidden) / Double(max(1, buckets.reduce(0) { $0 + $1.buffer.count }))
    var used = parameters.map { $0.grad == nil ? 0.0 : 1.0 }
    // Parameters the step did not reach go as zeros, so that every process reduces every bucket.
    for bucket in buckets where !bucket.isFull {
      for (s, i) in bucket.members.enumerated() where !filledThisStep.contains(i) { bucket.fill(s, from: parameters[i]) }
    }
    startFullBuckets()
    for bucket in buckets { bucket.finish(into: parameters) }
    // A parameter no process reached keeps no gradient, so the optimiser leaves it alone (no
    // weight decay, no momentum) as it would in one process.
    communicator.allreduce(&used)
    for (p, count) in zip(parameters, used) where count == 0 { p.grad = nil }
    lastReductionWait = Date().timeIntervalSince(waitStarted)
    filledThisStep = []
    nextToStart = 0
    if let order = readyOrder {
      // The first step's order on rank 0, complete with the parameters it did not reach, becomes
      // every process's bucket order.
      let reached = Set(order)
      var first = order + parameters.indices.reversed().filter { !reached.contains($0) }
      communicator.broadcast(&first, from: 0)
      readyOrder = nil
      buildBuckets(order: first)
    }
  }

  private var filledThisStep = Set<Int>()

  /// A parameter's gradient is complete: into its bucket, and start what can be started.
  private func ready(_ leaf: Variable) {
    guard let (b, s) = slots[ObjectIdentifier(leaf)] else { return }
    let i = buckets[b].members[s]
    guard filledThisStep.insert(i).inserted else { return }
    readyOrder?.append(i)
    buckets[b].fill(s, from: leaf)
    if overlap != .none { startFullBuckets() }
  }

  /// Starts the full buckets in order: a bucket starts only after every bucket before it, so the
  /// processes start their reductions in the same order.
  private func startFullBuckets() {
    while nextToStart < buckets.count && buckets[nextToStart].isFull {
      buckets[nextToStart].start(communicator, overlap)
      nextToStart += 1
    }
  }

  /// Replaces every floating-point buffer (running statistics) by its mean over the processes.
  public func averageBuffers() {
    guard communicator.size > 1 else { return }
    let buffers = model.namedBuffers.map(\.variable)
    guard !buffers.isEmpty else { return }
    var values = buffers.flatMap { $0.value.scalars(as: Double.self) }
    communicator.allreduce(&values)
    var start = 0
    for b in buffers {
      let n = b.value.count
      let mean = values[start..<start + n].map { $0 / Double(communicator.size) }
      b.value = Tensor(mean, shape: b.shape).converted(to: b.dtype)
      start += n
    }
  }
}

/// Batch-normalisation sums added across the processes of a communicator.
final class CommunicatorSynchronizer: BatchStatisticsSynchronizer {
  let communicator: Communicator
  init(_ communicator: Communicator) { self.communicator = communicator }
  func sumAcrossProcesses(_ values: inout [Double]) { communicator.allreduce(&values) }
}
