import Autograd
import TensorModule

/// The mean cross-entropy between `logits` [N, classes] and integer `labels`, optionally with label
/// smoothing (the target puts 1 - ε on the label and ε / classes on every class, as PyTorch).
///
/// A composite of `logSoftmax(_:alongAxis:)`: its gradient follows from the primitives.
/// - Precondition: one label per row, each in 0..<classes; `labelSmoothing` in [0, 1].
public func crossEntropy(_ logits: Variable, labels: [Int], labelSmoothing: Double = 0) -> Variable {
  require(logits.shape.count == 2, "crossEntropy: logits must be [N, classes], got \(logits.shape)")
  let (n, classes) = (logits.shape[0], logits.shape[1])
  require(labels.count == n, "crossEntropy: \(labels.count) labels for logits \(logits.shape)")
  require((0...1).contains(labelSmoothing), "crossEntropy: label smoothing \(labelSmoothing) is not in [0, 1]")
  var target = [Double](repeating: labelSmoothing / Double(classes), count: n * classes)
  for (i, label) in labels.enumerated() {
    require(label >= 0 && label < classes, "crossEntropy: label \(label) is out of range for \(classes) classes")
    target[i * classes + label] += 1 - labelSmoothing
  }
  let weights = Tensor(target, shape: [n, classes]).converted(to: logits.dtype) * (-1 / Double(max(n, 1)))
  return sum(logSoftmax(logits, alongAxis: 1) * Variable(weights))
}

/// The fraction of rows of `logits` [N, classes] whose largest entry is at the label.
public func accuracy(_ logits: Tensor, labels: [Int]) -> Double {
  require(logits.rank == 2 && logits.shape[0] == labels.count, "accuracy: logits \(logits.shape) do not fit \(labels.count) labels")
  let predicted = logits.argmax(alongAxis: 1)
  return Double(zip(predicted, labels).filter { $0 == $1 }.count) / Double(max(labels.count, 1))
}
