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

/// How a loss reduces its per-element values.
public enum LossReduction: Sendable {
  /// Their mean (PyTorch's default).
  case mean
  /// Their sum.
  case sum
  /// None: the per-element losses, in the input's shape.
  case none
}

/// Applies `reduction` to per-element losses.
func reduced(_ losses: Variable, _ reduction: LossReduction) -> Variable {
  switch reduction {
  case .mean: return mean(losses)
  case .sum: return sum(losses)
  case .none: return losses
  }
}

/// Requires `prediction` and `target` to have one shape, naming `loss`.
func requireSameShape(_ loss: String, _ prediction: Variable, _ target: Tensor) {
  require(prediction.shape == target.shape, "\(loss): prediction \(prediction.shape) and target \(target.shape) differ in shape")
  require(prediction.dtype == target.dtype, "\(loss): prediction is \(prediction.dtype), target \(target.dtype)")
}

/// The squared error (prediction - target)².
public func mseLoss(_ prediction: Variable, _ target: Tensor, reduction: LossReduction = .mean) -> Variable {
  requireSameShape("mseLoss", prediction, target)
  let d = prediction - Variable(target)
  return reduced(d * d, reduction)
}

/// The absolute error |prediction - target|.
public func l1Loss(_ prediction: Variable, _ target: Tensor, reduction: LossReduction = .mean) -> Variable {
  requireSameShape("l1Loss", prediction, target)
  return reduced(abs(prediction - Variable(target)), reduction)
}

/// The Huber-like smooth L1 loss: 0.5 d² / β where |d| < β, |d| - 0.5 β elsewhere (PyTorch's
/// `smooth_l1_loss`; β = 0 is the L1 loss).
public func smoothL1Loss(_ prediction: Variable, _ target: Tensor, beta: Double = 1, reduction: LossReduction = .mean) -> Variable {
  requireSameShape("smoothL1Loss", prediction, target)
  require(beta >= 0, "smoothL1Loss: beta must not be negative, got \(beta)")
  let d = prediction - Variable(target)
  guard beta > 0 else { return reduced(abs(d), reduction) }
  let quadratic = TensorModule.abs(d.value) .< Tensor(beta, dtype: d.dtype)
  return reduced(select(quadratic, d * d * (0.5 / beta), abs(d) - 0.5 * beta), reduction)
}

/// The binary cross-entropy of `logits` against `targets` in [0, 1], computed from the logits as
/// softplus(x) - x · t, which stays finite where sigmoid(x) rounds to 0 or 1.
public func binaryCrossEntropy(withLogits logits: Variable, targets: Tensor, reduction: LossReduction = .mean) -> Variable {
  requireSameShape("binaryCrossEntropy", logits, targets)
  return reduced(softplus(logits) - logits * Variable(targets), reduction)
}
