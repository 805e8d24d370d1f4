import Autograd
import TensorModule

/// A fully connected layer: `input · weightᵀ + bias` for inputs [..., inputFeatures].
public final class Linear: Layer {
  /// [outputFeatures, inputFeatures], as PyTorch stores it.
  public let weight: Variable
  /// [outputFeatures], when the layer has one.
  public let bias: Variable?

  /// A layer from `inputFeatures` to `outputFeatures` with PyTorch's default initialisation
  /// (Uniform(±1 / sqrt(inputFeatures))) unless `initializer` is given for the weight.
  public init(inputFeatures: Int, outputFeatures: Int, bias: Bool = true, initializer: Initializer? = nil) {
    weight = parameter((initializer ?? .pytorchDefault(fanIn: inputFeatures)).tensor([outputFeatures, inputFeatures]), "weight")
    self.bias = bias ? parameter(Initializer.pytorchDefault(fanIn: inputFeatures).tensor([outputFeatures]), "bias") : nil
  }

  /// `weight` and, if present, `bias`.
  public var ownParameters: [(name: String, variable: Variable)] {
    [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
  }

  /// The layer applied to `input` [..., inputFeatures]: every leading dimension is a batch
  /// dimension, as in PyTorch.
  public func callAsFunction(_ input: Variable) -> Variable {
    let shape = input.shape
    require(
      shape.count >= 1 && shape.last == weight.shape[1],
      "Linear: input \(shape) does not fit weight \(weight.shape) (expected [..., \(weight.shape[1])])")
    return linear(input, weight: weight, bias: bias)
  }
}
