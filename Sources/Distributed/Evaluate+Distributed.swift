import Reprise

/// The loss and accuracy of `model` on `dataset`, each process evaluating a contiguous part of
/// the images and the totals added across processes: every image counts exactly once, so the
/// accuracy is exactly a single process's (PyTorch's padded `DistributedSampler` counts some
/// images twice), and the loss equals it up to the order of its sum.
///
/// Every process calls it with the same model state and data set; all return the same metrics.
public func evaluate(_ model: any Layer, on dataset: Dataset, batchSize: Int = 500, communicator: Communicator) -> Metrics {
  let part = ShardedSampler.evaluationPart(count: dataset.count, rank: communicator.rank, size: communicator.size)
  let local = evaluationTotals(model, on: dataset, range: part, batchSize: batchSize)
  var totals = [local.lossSum, Double(local.correct), Double(local.count)]
  communicator.allreduce(&totals)
  let n = max(totals[2], 1)
  return Metrics(loss: totals[0] / n, accuracy: totals[1] / n)
}
