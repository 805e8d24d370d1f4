import Autograd
import TensorModule

/// A 2-D convolution layer over [N, C, H, W] inputs, with an optional bias.
public final class Conv2d: Layer {
  /// The filters, [outputChannels, inputChannels / groups, kernelHeight, kernelWidth].
  public let weight: Variable
  /// One bias per output channel, when the layer has one.
  public let bias: Variable?
  /// The step between windows.
  public let stride: IntOrPair
  /// Zeros added on each side of the input.
  public let padding: IntOrPair
  /// The spacing between kernel taps.
  public let dilation: IntOrPair
  /// Input and output channels are split into this many independent groups.
  public let groups: Int

  /// A convolution from `inputChannels` to `outputChannels` with PyTorch's default initialisation
  /// (Uniform(±1 / sqrt(fan-in)) for weight and bias) unless `initializer` is given for the weight.
  /// - Precondition: both channel counts are divisible by `groups`.
  public init(
    inputChannels: Int, outputChannels: Int, kernelSize: IntOrPair, stride: IntOrPair = 1, padding: IntOrPair = 0,
    dilation: IntOrPair = 1, groups: Int = 1, bias: Bool = true, initializer: Initializer? = nil
  ) {
    require(
      groups >= 1 && inputChannels % groups == 0 && outputChannels % groups == 0,
      "Conv2d: \(inputChannels) input and \(outputChannels) output channels are not divisible by \(groups) groups")
    let shape = [outputChannels, inputChannels / groups, kernelSize.height, kernelSize.width]
    let fanIn = shape[1] * shape[2] * shape[3]
    weight = parameter((initializer ?? .pytorchDefault(fanIn: fanIn)).tensor(shape), "weight")
    self.bias = bias ? parameter(Initializer.pytorchDefault(fanIn: fanIn).tensor([outputChannels]), "bias") : nil
    (self.stride, self.padding, self.dilation, self.groups) = (stride, padding, dilation, groups)
  }

  /// `weight` and, if present, `bias`.
  public var ownParameters: [(name: String, variable: Variable)] {
    [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
  }

  /// The convolution of `input` [N, C, H, W].
  public func callAsFunction(_ input: Variable) -> Variable {
    callAsFunction(input, scalingPlanes: nil)
  }

  /// The convolution of `input` times `planeScale`, one constant factor per plane ([N, C, 1, 1]:
  /// a channel dropout's ``Dropout2d/mask(for:)``), applied as the convolution reads its input
  /// (Autograd's `conv2d(_:_:scalingPlanes:stride:padding:dilation:groups:)`); without factors,
  /// the plain convolution.
  public func callAsFunction(_ input: Variable, scalingPlanes planeScale: Tensor?) -> Variable {
    let y =
      if let planeScale {
        conv2d(input, weight, scalingPlanes: planeScale, stride: stride, padding: padding, dilation: dilation, groups: groups)
      } else {
        conv2d(input, weight, stride: stride, padding: padding, dilation: dilation, groups: groups)
      }
    guard let bias else { return y }
    return y + reshape(bias, to: [1, -1, 1, 1])
  }
}
