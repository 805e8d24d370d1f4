import Autograd
import TensorModule

/// A fully connected layer: `input · weightᵀ + bias` for inputs [N, inputFeatures].
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

  /// The layer applied to `input` [N, inputFeatures].
  public func callAsFunction(_ input: Variable) -> Variable {
    require(
      input.shape.count == 2 && input.shape[1] == weight.shape[1],
      "Linear: input \(input.shape) does not fit weight \(weight.shape) (expected [N, \(weight.shape[1])])")
    let y = matmul(input, transpose(weight))
    return bias.map { y + $0 } ?? y
  }
}
