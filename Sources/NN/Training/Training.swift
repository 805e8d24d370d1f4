import Autograd
import TensorModule

/// The loss and accuracy of one pass over a batch or a data set.
public struct Metrics: Sendable {
  /// The mean cross-entropy.
  public var loss: Double
  /// The fraction classified correctly.
  public var accuracy: Double

  /// Metrics of the given loss and accuracy.
  public init(loss: Double, accuracy: Double) { (self.loss, self.accuracy) = (loss, accuracy) }
}

/// One training step: forward in training mode, cross-entropy, backward, optimiser update.
///
/// - `microBatches`: the batch is split into this many consecutive parts, each run forward and
///   backward on its own with its loss weighted by its share of the batch, and the gradients
///   added before the update (gradient accumulation): the memory of the largest part, and batch
///   normalisation over each part. A data-parallel run over as many processes, without
///   synchronized batch normalisation, takes the same step.
/// - `channelSparsity`: network slimming's L1 penalty on the batch-norm scales
///   (``addChannelSparsityGradient(_:strength:)``), added after the backward pass; 0 is none.
/// - Returns: the batch's loss and accuracy (before the update).
@discardableResult
public func trainStep(
  _ model: any Layer, optimizer: any Optimizer, images: Tensor, labels: [Int], labelSmoothing: Double = 0, microBatches: Int = 1,
  channelSparsity: Double = 0
) -> Metrics {
  require(images.rank >= 1 && images.shape[0] == labels.count, "trainStep: \(labels.count) labels for images \(images.shape)")
  require((1...max(1, labels.count)).contains(microBatches), "trainStep: \(microBatches) micro-batches of a batch of \(labels.count)")
  optimizer.zeroGradients()
  guard microBatches > 1 else {
    let logits = withLearningPhase(.training) { model(Variable(images)) }
    let loss = crossEntropy(logits, labels: labels, labelSmoothing: labelSmoothing)
    loss.backward()
    addChannelSparsityGradient(model, strength: channelSparsity)
    optimizer.step()
    return Metrics(loss: loss.value.scalar, accuracy: accuracy(logits.value, labels: labels))
  }
  var lossSum = 0.0, correct = 0.0
  for k in 0..<microBatches {
    let part = labels.count * k / microBatches..<labels.count * (k + 1) / microBatches
    let partLabels = Array(labels[part])
    let logits = withLearningPhase(.training) { model(Variable(slice(images, part, alongAxis: 0))) }
    let loss = crossEntropy(logits, labels: partLabels, labelSmoothing: labelSmoothing)
    loss.backward(seed: Tensor(repeating: Double(part.count) / Double(labels.count), shape: loss.shape, dtype: loss.dtype))
    lossSum += loss.value.scalar * Double(part.count)
    correct += accuracy(logits.value, labels: partLabels) * Double(part.count)
  }
  addChannelSparsityGradient(model, strength: channelSparsity)
  optimizer.step()
  return Metrics(loss: lossSum / Double(labels.count), accuracy: correct / Double(labels.count))
}

/// The loss and accuracy of `model` on `dataset`, in inference mode without recording, with the
/// images converted to the model's element type.
public func evaluate(_ model: any Layer, on dataset: Dataset, batchSize: Int = 500) -> Metrics {
  let totals = evaluationTotals(model, on: dataset, batchSize: batchSize)
  let n = Double(max(totals.count, 1))
  return Metrics(loss: totals.lossSum / n, accuracy: Double(totals.correct) / n)
}

/// The summed cross-entropy and the number of correct predictions of `model` on the images of
/// `dataset` at positions `range` (all by default), in inference mode without recording, in
/// batches of `batchSize`: totals that add up across parts of a data set (a distributed
/// evaluation adds the processes' totals).
public func evaluationTotals(
  _ model: any Layer, on dataset: Dataset, range: Range<Int>? = nil, batchSize: Int = 500
) -> (lossSum: Double, correct: Int, count: Int) {
  // One model's totals are an ensemble of one's member totals: one evaluation loop serves both.
  let totals = ensembleEvaluationTotals([model], on: dataset, range: range, batchSize: batchSize).members[0]
  return (totals.lossSum, totals.correct, totals.count)
}
