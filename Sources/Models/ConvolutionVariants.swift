import Autograd
import NN
import TensorModule

/// The interchangeable replacements of "conv 3x3 + BN" compared by the Multiception paper (Bao,
/// Graeber and Wang, "Depthwise Multiception Convolution for Reducing Network Parameters without
/// Sacrificing Accuracy", ICARCV 2020). Each maps `inputChannels` to
/// `outputChannels` with a stride and takes a list of kernel sizes (used by Multiception only).
public enum ConvolutionVariant: String, CaseIterable, Sendable, Codable {
  /// conv 3x3 (stride s, no bias), BN.
  case standard
  /// depthwise 3x3 (stride s), pointwise 1x1 with bias, BN.
  case dsconv
  /// one depthwise KxK per kernel size at stride 1, concatenated, BN, pointwise 1x1 (stride s, bias), BN.
  case multiception
  /// the official repository's MixConv: channels in three parts, ordinary 3x3, 5x5 and 7x7 convolutions.
  case mixconv

  /// The variant's module.
  ///
  /// - `kernels`: the depthwise kernel sizes of a Multiception layer, in order (a repeated size is
  ///   an independent kernel of that size).
  /// - `fan`: the fan of the He-normal initialisation of every convolution.
  /// - `zeroBias`: pointwise biases start at zero instead of PyTorch's uniform default.
  public func make(
    inputChannels: Int, outputChannels: Int, stride: Int, kernels: [Int], fan: Initializer.Fan, zeroBias: Bool = false
  ) -> any Layer {
    let (i, o) = (inputChannels, outputChannels)
    switch self {
    case .standard: return StandardConvolution(inputChannels: i, outputChannels: o, stride: stride, fan: fan)
    case .dsconv: return DepthwiseSeparableConvolution(inputChannels: i, outputChannels: o, stride: stride, fan: fan, zeroBias: zeroBias)
    case .multiception:
      return MulticeptionConvolution(inputChannels: i, outputChannels: o, stride: stride, kernels: kernels, fan: fan, zeroBias: zeroBias)
    case .mixconv: return MixedConvolution(inputChannels: i, outputChannels: o, stride: stride, fan: fan)
    }
  }
}

/// A bias-free KxK convolution with padding (K - 1) / 2 and He-normal weights.
func convolution(_ input: Int, _ output: Int, kernel: Int, stride: Int = 1, groups: Int = 1, bias: Bool = false, fan: Initializer.Fan) -> Conv2d {
  Conv2d(
    inputChannels: input, outputChannels: output, kernelSize: .init(kernel), stride: .init(stride), padding: .init((kernel - 1) / 2),
    groups: groups, bias: bias, initializer: .kaimingNormal(fan))
}

/// conv 3x3 + BN: `conv`, `bn`.
public final class StandardConvolution: Layer {
  let conv: Conv2d, bn: BatchNorm2d

  init(inputChannels: Int, outputChannels: Int, stride: Int, fan: Initializer.Fan) {
    conv = convolution(inputChannels, outputChannels, kernel: 3, stride: stride, fan: fan)
    bn = BatchNorm2d(channels: outputChannels)
  }

  /// `conv`, `bn`.
  public var children: [(name: String, module: any Module)] { [("conv", conv), ("bn", bn)] }

  /// BN of the convolution.
  public func callAsFunction(_ input: Variable) -> Variable { callAsFunction(input, applyingReLU: false) }

  /// BN of the convolution, and a ReLU in the BN's pass when `applyingReLU`.
  public func callAsFunction(_ input: Variable, applyingReLU: Bool) -> Variable { bn(conv(input), applyingReLU: applyingReLU) }

  /// `next(relu(self(input)))`, the BN, ReLU and `next` one pre-activation unit.
  public func callAsFunction(_ input: Variable, followedByReLUAnd next: Conv2d) -> Variable {
    batchNormReLUConv(conv(input), norm: bn, conv: next)
  }
}

/// Depthwise 3x3 (with the stride), pointwise 1x1 with bias, BN; nothing between the two convolutions.
public final class DepthwiseSeparableConvolution: Layer {
  let depthwise: Conv2d, pointwise: Conv2d, bn: BatchNorm2d

  init(inputChannels: Int, outputChannels: Int, stride: Int, fan: Initializer.Fan, zeroBias: Bool) {
    depthwise = convolution(inputChannels, inputChannels, kernel: 3, stride: stride, groups: inputChannels, fan: fan)
    pointwise = convolution(inputChannels, outputChannels, kernel: 1, bias: true, fan: fan)
    if zeroBias { pointwise.bias!.value = Tensor(zeros: [outputChannels]) }
    bn = BatchNorm2d(channels: outputChannels)
  }

  /// `depthwise`, `pointwise`, `bn`.
  public var children: [(name: String, module: any Module)] { [("depthwise", depthwise), ("pointwise", pointwise), ("bn", bn)] }

  /// BN of the pointwise convolution of the depthwise one.
  public func callAsFunction(_ input: Variable) -> Variable { callAsFunction(input, applyingReLU: false) }

  /// BN of the pointwise convolution of the depthwise one, and a ReLU in the BN's pass when `applyingReLU`.
  public func callAsFunction(_ input: Variable, applyingReLU: Bool) -> Variable {
    bn(pointwise(depthwise(input)), applyingReLU: applyingReLU)
  }

  /// `next(relu(self(input)))`, the BN, ReLU and `next` one pre-activation unit.
  public func callAsFunction(_ input: Variable, followedByReLUAnd next: Conv2d) -> Variable {
    batchNormReLUConv(pointwise(depthwise(input)), norm: bn, conv: next)
  }
}

/// Multiception: depthwise KxK convolutions for every K in `kernels` at full resolution, their
/// outputs concatenated kernel-major and computed straight into one tensor
/// (`concatenatedConv2d(_:_:stride:paddings:groups:)`), BN, then a pointwise 1x1 convolution with
/// bias that applies the stride, and BN. No ReLU inside.
public final class MulticeptionConvolution: Layer {
  /// One depthwise convolution per kernel size, `depthwise.0`, `depthwise.1`, ...
  let depthwise: [Conv2d]
  let bn1: BatchNorm2d, pointwise: Conv2d, bn2: BatchNorm2d

  init(inputChannels c: Int, outputChannels: Int, stride: Int, kernels: [Int], fan: Initializer.Fan, zeroBias: Bool) {
    require(!kernels.isEmpty && kernels.allSatisfy { $0 > 0 && $0 % 2 == 1 }, "Multiception: kernel sizes must be odd, got \(kernels)")
    depthwise = kernels.map { convolution(c, c, kernel: $0, groups: c, fan: fan) }
    bn1 = BatchNorm2d(channels: c * kernels.count)
    pointwise = convolution(c * kernels.count, outputChannels, kernel: 1, stride: stride, bias: true, fan: fan)
    if zeroBias { pointwise.bias!.value = Tensor(zeros: [outputChannels]) }
    bn2 = BatchNorm2d(channels: outputChannels)
  }

  /// `depthwise.i`, `bn1`, `pointwise`, `bn2`.
  public var children: [(name: String, module: any Module)] {
    depthwise.enumerated().map { ("depthwise.\($0)", $1) } + [("bn1", bn1), ("pointwise", pointwise), ("bn2", bn2)]
  }

  /// The layer applied to `input`.
  public func callAsFunction(_ input: Variable) -> Variable { callAsFunction(input, applyingReLU: false) }

  /// The layer applied to `input`, and a ReLU in the last BN's pass when `applyingReLU`.
  public func callAsFunction(_ input: Variable, applyingReLU: Bool) -> Variable {
    bn2(beforeLastNorm(input), applyingReLU: applyingReLU)
  }

  /// `next(relu(self(input)))`, `bn2`, ReLU and `next` one pre-activation unit.
  public func callAsFunction(_ input: Variable, followedByReLUAnd next: Conv2d) -> Variable {
    batchNormReLUConv(beforeLastNorm(input), norm: bn2, conv: next)
  }

  /// The pointwise convolution's output, before `bn2`.
  private func beforeLastNorm(_ input: Variable) -> Variable {
    let paddings = depthwise.map { IntOrPair(($0.weight.shape[2] - 1) / 2) }
    let branches = concatenatedConv2d(input, depthwise.map(\.weight), paddings: paddings, groups: input.shape[1])
    return pointwise(bn1(branches))
  }
}

/// The official repository's MixConv (not the MixConv paper's depthwise one): input and output
/// channels split in three parts of ⌊C/3⌋ (the remainder to the first), ordinary 3x3, 5x5 and 7x7
/// convolutions (stride s, no bias) from part i to part i, concatenated; no BN.
public final class MixedConvolution: Layer {
  let convs: [Conv2d]

  init(inputChannels: Int, outputChannels: Int, stride: Int, fan: Initializer.Fan) {
    func parts(_ c: Int) -> [Int] { [c - 2 * (c / 3), c / 3, c / 3] }
    convs = zip(zip(parts(inputChannels), parts(outputChannels)), [3, 5, 7]).map { io, k in convolution(io.0, io.1, kernel: k, stride: stride, fan: fan) }
  }

  /// `convs.0`, `convs.1`, `convs.2` (3x3, 5x5, 7x7).
  public var children: [(name: String, module: any Module)] { convs.enumerated().map { ("convs.\($0)", $1) } }

  /// The concatenated outputs of the three convolutions, computed straight into one tensor
  /// (`mixedConv2d(_:_:stride:paddings:)`).
  public func callAsFunction(_ input: Variable) -> Variable {
    mixedConv2d(input, convs.map(\.weight), stride: convs[0].stride, paddings: convs.map(\.padding))
  }
}
