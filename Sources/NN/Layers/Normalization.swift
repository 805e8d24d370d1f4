import Autograd
import TensorModule

/// Batch normalisation of [N, C] or [N, C, L] inputs, exactly as PyTorch's `BatchNorm1d`: the
/// statistics of each channel over the batch (and length), the same parameters, buffers and
/// running-statistics update as ``BatchNorm2d``, whose kernels it uses.
public final class BatchNorm1d: BatchNorm2d {
  /// The normalised input.
  public override func callAsFunction(_ input: Variable) -> Variable { callAsFunction(input, applyingReLU: false) }

  /// The normalised input, followed by a ReLU computed in the same pass when `applyingReLU`.
  public override func callAsFunction(_ input: Variable, applyingReLU: Bool) -> Variable {
    let shape = input.shape
    require(
      (shape.count == 2 || shape.count == 3) && shape[1] == weight.shape[0],
      "BatchNorm1d: input \(shape) does not have \(weight.shape[0]) channels in [N, C] or [N, C, L]")
    let planes = reshape(input, to: [shape[0], shape[1], shape.count == 3 ? shape[2] : 1, 1])
    return reshape(super.callAsFunction(planes, applyingReLU: applyingReLU, statistics: nil), to: shape)
  }
}

/// Layer normalisation (Ba et al. 2016) over the last dimensions, `normalizedShape`, with a
/// learned scale and shift of that shape, as PyTorch's `LayerNorm`.
public final class LayerNorm: Layer {
  /// The scale (γ), initially 1, or nil without an affine transform.
  public let weight: Variable?
  /// The shift (β), initially 0.
  public let bias: Variable?
  /// The trailing dimensions normalised together.
  public let normalizedShape: [Int]
  /// Added to the variance before the square root.
  public let epsilon: Double

  /// Normalisation over trailing dimensions of `normalizedShape` (eps 1e-5, as PyTorch).
  public init(_ normalizedShape: [Int], epsilon: Double = 1e-5, elementwiseAffine: Bool = true) {
    require(!normalizedShape.isEmpty && normalizedShape.allSatisfy { $0 > 0 }, "LayerNorm: shape \(normalizedShape) is not positive")
    (self.normalizedShape, self.epsilon) = (normalizedShape, epsilon)
    weight = elementwiseAffine ? parameter(Tensor(ones: normalizedShape), "weight") : nil
    bias = elementwiseAffine ? parameter(Tensor(zeros: normalizedShape), "bias") : nil
  }

  /// `weight` and `bias`, when affine.
  public var ownParameters: [(name: String, variable: Variable)] {
    [weight.map { ("weight", $0) }, bias.map { ("bias", $0) }].compactMap { $0 }
  }

  /// `input` [..., normalizedShape] normalised over its trailing dimensions.
  public func callAsFunction(_ input: Variable) -> Variable {
    let shape = input.shape, k = normalizedShape.count
    require(
      shape.count >= k && Array(shape.suffix(k)) == normalizedShape,
      "LayerNorm: input \(shape) does not end in the normalised shape \(normalizedShape)")
    return layerNorm(input, normalizedShape: normalizedShape, weight: weight, bias: bias, epsilon: epsilon)
  }
}

/// Group normalisation (Wu and He 2018): the channels of [N, C, ...] inputs in `groups` groups,
/// each normalised over its channels and positions, with a learned scale and shift per channel,
/// as PyTorch's `GroupNorm`.
public final class GroupNorm: Layer {
  /// The number of groups.
  public let groups: Int
  /// The scale per channel (γ), initially 1.
  public let weight: Variable
  /// The shift per channel (β), initially 0.
  public let bias: Variable
  /// Added to the variance before the square root.
  public let epsilon: Double

  /// `groups` groups of `channels / groups` channels (eps 1e-5, as PyTorch).
  public init(groups: Int, channels: Int, epsilon: Double = 1e-5) {
    require(groups > 0 && channels % groups == 0, "GroupNorm: \(channels) channels do not divide into \(groups) groups")
    (self.groups, self.epsilon) = (groups, epsilon)
    weight = parameter(Tensor(ones: [channels]), "weight")
    bias = parameter(Tensor(zeros: [channels]), "bias")
  }

  /// `weight` and `bias`.
  public var ownParameters: [(name: String, variable: Variable)] { [("weight", weight), ("bias", bias)] }

  /// `input` [N, C, ...] normalised per image and group.
  public func callAsFunction(_ input: Variable) -> Variable {
    let shape = input.shape
    require(shape.count >= 2 && shape[1] == weight.shape[0], "GroupNorm: input \(shape) does not have \(weight.shape[0]) channels in [N, C, ...]")
    let grouped = reshape(input, to: [shape[0], groups, -1])
    let normalized = reshape(layerNorm(grouped, normalizedShape: [grouped.shape[2]], epsilon: epsilon), to: shape)
    let perChannel = [1, shape[1]] + Array(repeating: 1, count: shape.count - 2)
    return normalized * reshape(weight, to: perChannel) + reshape(bias, to: perChannel)
  }
}

/// A table of `count` vectors of `dimension` features, looked up by index (PyTorch's `Embedding`,
/// initialised N(0, 1)).
public final class Embedding: Module {
  /// [count, dimension].
  public let weight: Variable

  /// `count` vectors of `dimension` features.
  public init(count: Int, dimension: Int) {
    require(count > 0 && dimension > 0, "Embedding: count \(count) and dimension \(dimension) must be positive")
    weight = parameter(Initializer.normal(standardDeviation: 1).tensor([count, dimension]), "weight")
  }

  /// `weight`.
  public var ownParameters: [(name: String, variable: Variable)] { [("weight", weight)] }

  /// The vectors at `indices`: [indices' shape..., dimension].
  public func callAsFunction(_ indices: IndexTensor) -> Variable { embedding(indices, weight) }
}
