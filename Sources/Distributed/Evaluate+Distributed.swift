import Reprise

/// The loss and accuracy of `model` on `dataset`, each process evaluating a contiguous part of
/// the images and the totals added across processes: every image counts exactly once, so the
/// accuracy is exactly a single process's (PyTorch's padded `DistributedSampler` counts some
/// images twice), and the loss equals it up to the order of its sum.
///
/// Every process calls it with the same model state and data set; all return the same metrics.
public func evaluate(_ model: any Layer, on dataset: Dataset, batchSize: Int = 500, communicator: Communicator) -> Metrics {
  evaluateEnsemble([model], on: dataset, batchSize: batchSize, communicator: communicator).members[0]
}

/// Each model's loss and accuracy on `dataset` and their ensemble's (the mean of their softmax
/// outputs), each process evaluating a contiguous part of the images as
/// ``evaluate(_:on:batchSize:communicator:)`` does; all processes return the same metrics.
public func evaluateEnsemble(
  _ models: [any Layer], on dataset: Dataset, batchSize: Int = 500, communicator: Communicator
) -> (members: [Metrics], ensemble: Metrics) {
  let part = ShardedSampler.evaluationPart(count: dataset.count, rank: communicator.rank, size: communicator.size)
  let local = ensembleEvaluationTotals(models, on: dataset, range: part, batchSize: batchSize)
  var sums = (local.members + [local.ensemble]).flatMap { [$0.lossSum, Double($0.correct)] }
  communicator.allreduce(&sums)
  let totals = stride(from: 0, to: sums.count, by: 2).map {
    EvaluationTotals(lossSum: sums[$0], correct: Int(sums[$0 + 1].rounded()), count: dataset.count).metrics
  }
  return (Array(totals.dropLast()), totals.last!)
}
