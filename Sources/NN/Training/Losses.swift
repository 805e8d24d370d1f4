import Autograd
import TensorModule

/// The mean cross-entropy between `logits` [N, C] or [N, C, d₁, ...] and integer `labels`, one per
/// position in row-major order of (N, d₁, ...), as PyTorch's `cross_entropy`.
///
/// Positions whose label is `ignoreIndex` contribute nothing and are not counted in the mean. With
/// label smoothing ε the target puts 1 - ε on the label and ε / C on every class. A composite of
/// `logSoftmax(_:alongAxis:)`: its gradient follows from the primitives.
/// - Precondition: one label per position, each in 0..<C or `ignoreIndex`; `labelSmoothing` in [0, 1].
public func crossEntropy(_ logits: Variable, labels: [Int], ignoreIndex: Int? = nil, labelSmoothing: Double = 0) -> Variable {
  require(logits.shape.count >= 2, "crossEntropy: logits must be [N, classes, ...], got \(logits.shape)")
  return negativeLogLikelihood(logSoftmax(logits, alongAxis: 1), labels, ignoreIndex, labelSmoothing, "crossEntropy")
}

/// The mean negative log-likelihood of `labels` under `logProbabilities` [N, C] or [N, C, d₁, ...]
/// (PyTorch's `nll_loss`), with positions labelled `ignoreIndex` left out of the mean.
public func nllLoss(_ logProbabilities: Variable, labels: [Int], ignoreIndex: Int? = nil) -> Variable {
  require(logProbabilities.shape.count >= 2, "nllLoss: log-probabilities must be [N, classes, ...], got \(logProbabilities.shape)")
  return negativeLogLikelihood(logProbabilities, labels, ignoreIndex, 0, "nllLoss")
}

/// -Σ target · logProbabilities / (positions not ignored), the target as `crossEntropy` describes.
/// An all-ignored batch has loss 0.
private func negativeLogLikelihood(
  _ logProbabilities: Variable, _ labels: [Int], _ ignoreIndex: Int?, _ labelSmoothing: Double, _ name: String
) -> Variable {
  let shape = logProbabilities.shape
  let (n, classes) = (shape[0], shape[1]), positions = shape.dropFirst(2).reduce(1, *)
  require(labels.count == n * positions, "\(name): \(labels.count) labels for \(name == "nllLoss" ? "log-probabilities" : "logits") \(shape)")
  require((0...1).contains(labelSmoothing), "\(name): label smoothing \(labelSmoothing) is not in [0, 1]")
  var target = [Double](repeating: labelSmoothing / Double(classes), count: n * classes * positions)
  var counted = 0
  for (i, label) in labels.enumerated() {
    let (image, position) = i.quotientAndRemainder(dividingBy: positions)
    if label == ignoreIndex {
      for c in 0..<classes { target[(image * classes + c) * positions + position] = 0 }
      continue
    }
    require(label >= 0 && label < classes, "\(name): label \(label) is out of range for \(classes) classes")
    target[(image * classes + label) * positions + position] += 1 - labelSmoothing
    counted += 1
  }
  let weights = Tensor(target, shape: shape).converted(to: logProbabilities.dtype) * (-1 / Double(max(counted, 1)))
  return sum(logProbabilities * Variable(weights))
}

/// The fraction of rows of `logits` [N, classes] whose largest entry is at the label.
public func accuracy(_ logits: Tensor, labels: [Int]) -> Double {
  require(logits.rank == 2 && logits.shape[0] == labels.count, "accuracy: logits \(logits.shape) do not fit \(labels.count) labels")
  let predicted = argmax(logits, alongAxis: 1)
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
