import Autograd
import TensorModule

/// Zeroes each element with probability `probability` in training and scales the rest by
/// 1 / (1 - probability); the identity in inference. Masks come from `RandomGenerator/global`, so
/// a checkpoint replay draws the same ones (contract rule 4).
public final class Dropout: Layer {
  /// The probability of zeroing an element.
  public let probability: Double

  /// Dropout with the given probability.
  /// - Precondition: `probability` is in [0, 1).
  public init(probability: Double) {
    require((0..<1).contains(probability), "Dropout: probability \(probability) is not in [0, 1)")
    self.probability = probability
  }

  /// `input` with dropped elements in training.
  public func callAsFunction(_ input: Variable) -> Variable {
    dropout(input, probability: probability, maskShape: input.shape)
  }
}

/// Zeroes whole channels of [N, C, H, W] inputs with probability `probability` in training (one
/// draw per image and channel), scaling the rest by 1 / (1 - probability).
public final class Dropout2d: Layer {
  /// The probability of zeroing a channel.
  public let probability: Double

  /// Channel dropout with the given probability.
  /// - Precondition: `probability` is in [0, 1).
  public init(probability: Double) {
    require((0..<1).contains(probability), "Dropout2d: probability \(probability) is not in [0, 1)")
    self.probability = probability
  }

  /// `input` with dropped channels in training.
  public func callAsFunction(_ input: Variable) -> Variable {
    mask(for: input).map { input * Variable($0) } ?? input
  }

  /// The factors ``callAsFunction(_:)`` would multiply `input` by, drawn as it draws them: in
  /// training a mask [N, C, 1, 1] of 0 and 1 / (1 - probability), in inference nil. For a layer
  /// that applies them itself, such as ``Conv2d/callAsFunction(_:scalingPlanes:)``.
  public func mask(for input: Variable) -> Tensor? {
    require(input.shape.count == 4, "Dropout2d: input must be [N, C, H, W], got \(input.shape)")
    return dropoutMask([input.shape[0], input.shape[1], 1, 1], probability: probability, dtype: input.dtype)
  }
}

/// Multiplies `input` by a scaled Bernoulli mask of `maskShape` (broadcast) in training.
func dropout(_ input: Variable, probability: Double, maskShape: [Int]) -> Variable {
  dropoutMask(maskShape, probability: probability, dtype: input.dtype).map { input * Variable($0) } ?? input
}

/// In training, a Bernoulli mask of `shape` scaled by 1 / keep; nil in inference or with nothing to drop.
func dropoutMask(_ shape: [Int], probability: Double, dtype: DType) -> Tensor? {
  guard LearningPhase.current == .training && probability > 0 else { return nil }
  let keep = 1 - probability
  return Tensor(randomBernoulli: shape, probability: keep, dtype: dtype) * (1 / keep)
}
