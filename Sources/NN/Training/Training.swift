import Autograd
import TensorModule

/// The loss and accuracy of one pass over a batch or a data set.
public struct Metrics: Sendable {
  /// The mean cross-entropy.
  public var loss: Double
  /// The fraction classified correctly.
  public var accuracy: Double
}

/// One training step: forward in training mode, cross-entropy, backward, optimiser update.
///
/// - Returns: the batch's loss and accuracy (before the update).
@discardableResult
public func trainStep(
  _ model: any Layer, optimizer: any Optimizer, images: Tensor, labels: [Int], labelSmoothing: Double = 0
) -> Metrics {
  optimizer.zeroGradients()
  let logits = withLearningPhase(.training) { model(Variable(images)) }
  let loss = crossEntropy(logits, labels: labels, labelSmoothing: labelSmoothing)
  loss.backward()
  optimizer.step()
  return Metrics(loss: loss.value.scalar, accuracy: accuracy(logits.value, labels: labels))
}

/// The loss and accuracy of `model` on `dataset`, in inference mode without recording, with the
/// images converted to the model's element type.
public func evaluate(_ model: any Layer, on dataset: Dataset, batchSize: Int = 500) -> Metrics {
  let dtype = model.parameters.first?.dtype ?? .float32
  var generator = RandomGenerator(seed: 0)
  var totalLoss = 0.0, correct = 0.0
  return withoutRecording {
    withLearningPhase(.inference) {
      for start in stride(from: 0, to: dataset.count, by: batchSize) {
        let indices = Array(start..<min(start + batchSize, dataset.count))
        let (images, labels) = dataset.batch(indices, using: &generator)
        let logits = model(Variable(images.converted(to: dtype)))
        totalLoss += crossEntropy(logits, labels: labels).value.scalar * Double(indices.count)
        correct += accuracy(logits.value, labels: labels) * Double(indices.count)
      }
      let n = Double(max(dataset.count, 1))
      return Metrics(loss: totalLoss / n, accuracy: correct / n)
    }
  }
}
