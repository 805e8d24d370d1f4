import Reprise

/// Which images each process trains on: every process draws the same shuffled order of an epoch
/// and cuts the same global batches from it, and takes its own contiguous part of each.
///
/// Over an epoch the parts cover every image exactly once, with no image repeated or padded in
/// (PyTorch's `DistributedSampler` pads to a multiple of the process count). The parts of a batch
/// differ in size by at most one image; ``DataParallel`` weighs each process's gradient by its part.
public struct ShardedSampler: Sendable {
  /// The number of images in the data set.
  public let count: Int
  /// The images of all processes in one step.
  public let globalBatchSize: Int
  /// This process's rank.
  public let rank: Int
  /// The number of processes.
  public let size: Int

  /// A sampler of `count` images in global batches of `globalBatchSize` for process `rank` of `size`.
  ///
  /// - Throws: ``DistributedError/configuration(_:)`` when a batch would leave a process without
  ///   images: the global batch, or the last batch of an epoch, is smaller than the process count.
  public init(count: Int, globalBatchSize: Int, rank: Int, size: Int) throws {
    require(size > 0 && (0..<size).contains(rank) && count >= 0, "ShardedSampler: rank \(rank) of \(size)")
    (self.count, self.globalBatchSize, self.rank, self.size) = (count, globalBatchSize, rank, size)
    guard globalBatchSize >= size else {
      throw DistributedError.configuration("a batch of \(globalBatchSize) cannot give each of \(size) processes an image; use a batch of at least \(size)")
    }
    let last = count % globalBatchSize
    guard last == 0 || last >= size else {
      throw DistributedError.configuration(
        "the last batch of each epoch has \(last) of the \(count) images, fewer than the \(size) processes; choose a batch size that leaves none or at least \(size)")
    }
  }

  /// Global batches per epoch (the last may be smaller).
  public var stepsPerEpoch: Int { (count + globalBatchSize - 1) / globalBatchSize }

  /// The positions of step `step` (of an epoch) in the epoch's order: the global batch.
  public func globalBatch(_ step: Int) -> Range<Int> {
    require((0..<stepsPerEpoch).contains(step), "ShardedSampler: step \(step) of \(stepsPerEpoch)")
    return step * globalBatchSize..<min((step + 1) * globalBatchSize, count)
  }

  /// This process's part of a global batch of `batchCount` images, as positions within the batch.
  public func part(ofBatchOf batchCount: Int) -> Range<Int> {
    batchCount * rank / size..<batchCount * (rank + 1) / size
  }

  /// This process's part of `count` evaluation images: contiguous, about `count / size` of them.
  public static func evaluationPart(count: Int, rank: Int, size: Int) -> Range<Int> {
    count * rank / size..<count * (rank + 1) / size
  }
}
