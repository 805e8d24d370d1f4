import Autograd
import Foundation
import TensorModule

/// The mean of the models' softmax outputs for `images` [N, ...]: an ensemble's prediction
/// [N, classes], in Float64, computed in inference mode without recording (snapshot ensembles,
/// Huang et al., "Snapshot Ensembles: Train 1, get M for free", ICLR 2017). Each model sees the
/// images in its own element type.
///
/// - Precondition: at least one model, all with the same number of outputs.
public func ensembleProbabilities(_ models: [any Layer], _ images: Tensor) -> Tensor {
  ensembleOutputs(models, images).probabilities
}

/// Each model's logits and the mean of their softmax outputs (Float64).
private func ensembleOutputs(_ models: [any Layer], _ images: Tensor) -> (logits: [Tensor], probabilities: Tensor) {
  require(!models.isEmpty, "ensembleProbabilities: no models")
  let logits = withoutRecording {
    withLearningPhase(.inference) {
      models.map { model in model(Variable(images.converted(to: model.parameters.first?.dtype ?? .float32))).value }
    }
  }
  require(Set(logits.map(\.shape)).count == 1, "ensembleProbabilities: models disagree on the output shape: \(logits.map(\.shape))")
  let total = logits.dropFirst().reduce(softmax(logits[0].converted(to: .float64), alongAxis: 1)) {
    $0 + softmax($1.converted(to: .float64), alongAxis: 1)
  }
  return (logits, total * (1 / Double(models.count)))
}

/// Summed losses and correct predictions over a part of a data set, which add up across parts.
public struct EvaluationTotals: Sendable, Equatable {
  /// The summed cross-entropy.
  public var lossSum: Double
  /// The number of correct predictions.
  public var correct: Int
  /// The number of images.
  public var count: Int

  /// Totals from their parts.
  public init(lossSum: Double, correct: Int, count: Int) { (self.lossSum, self.correct, self.count) = (lossSum, correct, count) }

  /// The mean loss and the accuracy.
  public var metrics: Metrics {
    let n = Double(max(count, 1))
    return Metrics(loss: lossSum / n, accuracy: Double(correct) / n)
  }
}

/// Each model's totals and the ensemble's on the images of `dataset` at positions `range` (all by
/// default), in batches of `batchSize`. The ensemble predicts the mean of the models' softmax
/// outputs (``ensembleProbabilities(_:_:)``); its loss is the cross-entropy of that mean.
public func ensembleEvaluationTotals(
  _ models: [any Layer], on dataset: Dataset, range: Range<Int>? = nil, batchSize: Int = 500
) -> (members: [EvaluationTotals], ensemble: EvaluationTotals) {
  let range = range ?? 0..<dataset.count
  require(range.lowerBound >= 0 && range.upperBound <= dataset.count, "ensembleEvaluationTotals: range \(range) of \(dataset.count) images")
  var generator = RandomGenerator(seed: 0)
  var members = [EvaluationTotals](repeating: EvaluationTotals(lossSum: 0, correct: 0, count: range.count), count: models.count)
  var ensemble = EvaluationTotals(lossSum: 0, correct: 0, count: range.count)
  for start in stride(from: range.lowerBound, to: range.upperBound, by: batchSize) {
    let indices = Array(start..<min(start + batchSize, range.upperBound))
    let (images, labels) = dataset.batch(indices, using: &generator)
    let (logits, probabilities) = ensembleOutputs(models, images)
    for (m, output) in logits.enumerated() {
      members[m].lossSum += withoutRecording { crossEntropy(Variable(output), labels: labels).value.scalar } * Double(indices.count)
      // accuracy is k / n exactly rounded; times n it rounds back to k.
      members[m].correct += Int((accuracy(output, labels: labels) * Double(indices.count)).rounded())
    }
    for (i, label) in labels.enumerated() { ensemble.lossSum -= Foundation.log(probabilities[i, label]) }
    ensemble.correct += Int((accuracy(probabilities, labels: labels) * Double(indices.count)).rounded())
  }
  return (members, ensemble)
}

/// Each model's loss and accuracy on `dataset` and the ensemble's
/// (``ensembleEvaluationTotals(_:on:range:batchSize:)``).
public func evaluateEnsemble(_ models: [any Layer], on dataset: Dataset, batchSize: Int = 500) -> (members: [Metrics], ensemble: Metrics) {
  let totals = ensembleEvaluationTotals(models, on: dataset, batchSize: batchSize)
  return (totals.members.map(\.metrics), totals.ensemble.metrics)
}
