import Autograd
import NN
import TensorModule

/// The hyperparameters of a CIFAR ResNet (post-activation BasicBlock, depth 6n + 2), optionally with
/// squeeze-and-excitation, a Multiception-paper convolution variant and stochastic depth
/// (docs/models.md).
public struct ResNetConfiguration: Sendable, Equatable, Codable {
  /// Residual blocks per stage (n).
  public var blocksPerStage: Int
  /// The replacement of each block's first conv 3x3 + BN.
  public var convolution: ConvolutionVariant
  /// The depthwise kernel sizes of each stage's Multiception layers.
  public var kernels: [[Int]] = [[3, 5, 7], [3, 5], [3, 3]]
  /// The squeeze-and-excitation reduction, or nil for none.
  public var squeezeReduction: Int?
  /// The survival probability of the last block under stochastic depth (Huang et al. 2016), with
  /// linear decay from 1; 1 turns it off.
  public var finalSurvival: Double = 1
  /// Classes of the classifier.
  public var classCount: Int
  /// Channels of the input images.
  public var inputChannels: Int
  /// The channels between each block's first convolution and its second, block by block, in a
  /// network pruned by ``ResNet/pruned(ratio:)`` (standard convolutions only); nil for the stage
  /// widths.
  public var innerWidths: [Int]? = nil

  /// A configuration from its parts.
  public init(
    blocksPerStage: Int, convolution: ConvolutionVariant = .standard, squeezeReduction: Int? = nil, finalSurvival: Double = 1,
    classCount: Int = 10, inputChannels: Int = 3
  ) {
    (self.blocksPerStage, self.convolution, self.squeezeReduction, self.finalSurvival) =
      (blocksPerStage, convolution, squeezeReduction, finalSurvival)
    (self.classCount, self.inputChannels) = (classCount, inputChannels)
  }

  /// ResNet-20 (n = 3).
  public static func resnet20(_ convolution: ConvolutionVariant) -> Self { Self(blocksPerStage: 3, convolution: convolution) }
  /// The paper's "ResNet-50": the CIFAR BasicBlock network with n = 8.
  public static func resnet50(_ convolution: ConvolutionVariant) -> Self { Self(blocksPerStage: 8, convolution: convolution) }
  /// SE-ResNet-56 (n = 9, reduction 8).
  public static func seresnet56(_ convolution: ConvolutionVariant) -> Self {
    Self(blocksPerStage: 9, convolution: convolution, squeezeReduction: 8)
  }
}

/// CIFAR ResNet (He et al. 2016, option-B projections), SE-ResNet (Hu et al. 2018) and their
/// Multiception, DSConv and MixConv forms (Bao et al. 2020). Details: docs/models.md.
///
/// | stage   | output  | blocks                                                         |
/// |---------|---------|----------------------------------------------------------------|
/// | stem    | 32x32   | conv 3x3, 16, BN, ReLU                                         |
/// | stage 1 | 32x32   | n x [variant(16), ReLU, conv 3x3 16, BN, (SE)] + shortcut, ReLU |
/// | stage 2 | 16x16   | n x [... 32], the first with stride 2 and a 1x1 projection      |
/// | stage 3 | 8x8     | n x [... 64], the first with stride 2 and a 1x1 projection      |
/// | head    | 1x1     | global average pool, linear                                    |
public final class ResNet: Network {
  /// The configuration it was built from.
  public let configuration: ResNetConfiguration
  /// The stages in order, as `reprise summary` lists them.
  public let stages: [(name: String, layer: any Layer)]

  /// A network as configured: He-normal (fan-in) convolutions, BN 1 and 0, PyTorch's default linear.
  public init(_ configuration: ResNetConfiguration) {
    self.configuration = configuration
    let c = configuration, n = c.blocksPerStage, total = 3 * n
    let stem = Sequential([
      ("conv", convolution(c.inputChannels, 16, kernel: 3, fan: .fanIn)), ("bn", BatchNorm2d(channels: 16)), ("relu", ReLU()),
    ])
    var stages: [(String, any Layer)] = [("stem", stem)]
    var width = 16
    for (s, stageWidth) in [16, 32, 64].enumerated() {
      let blocks: [(String, any Layer)] = (0..<n).map { b in
        let index = s * n + b + 1
        let block = BasicBlock(
          inputChannels: b == 0 ? width : stageWidth, innerChannels: c.innerWidths?[index - 1] ?? stageWidth, outputChannels: stageWidth,
          stride: b == 0 && s > 0 ? 2 : 1, configuration: c, kernels: c.kernels[s], survival: 1 - Double(index) / Double(total) * (1 - c.finalSurvival))
        return ("\(b)", block)
      }
      stages.append(("layer\(s + 1)", Sequential(blocks)))
      width = stageWidth
    }
    stages += [("pool", GlobalAvgPool2d()), ("fc", Linear(inputFeatures: width, outputFeatures: c.classCount))]
    self.stages = stages
  }

  /// The stem, `layer1` to `layer3` and `fc`.
  public var children: [(name: String, module: any Module)] { stages.filter { !($0.layer is GlobalAvgPool2d) }.map { ($0.name, $0.layer) } }

  /// Every residual block a region that keeps nothing.
  public func memoryEfficientPlan() -> CheckpointPlan { .units(of: self) { $0.module is BasicBlock ? .nothing : nil } }
}

/// The post-activation basic block: variant(x), ReLU, conv 3x3, BN, optional SE, plus the
/// shortcut, ReLU. Under stochastic depth the residual branch survives a training step with
/// probability `survival` (one draw per batch from the global generator, so a checkpoint replay
/// draws the same) and is scaled by it at inference.
public final class BasicBlock: Layer {
  let first: any Layer, conv2: Conv2d, bn2: BatchNorm2d
  let squeeze: SqueezeExcitation?
  let shortcut: Sequential?
  let survival: Double

  init(
    inputChannels: Int, innerChannels: Int, outputChannels: Int, stride: Int, configuration c: ResNetConfiguration, kernels: [Int],
    survival: Double
  ) {
    first = c.convolution.make(inputChannels: inputChannels, outputChannels: innerChannels, stride: stride, kernels: kernels, fan: .fanIn)
    conv2 = convolution(innerChannels, outputChannels, kernel: 3, fan: .fanIn)
    bn2 = BatchNorm2d(channels: outputChannels)
    squeeze = c.squeezeReduction.map { SqueezeExcitation(channels: outputChannels, reduction: $0) }
    shortcut =
      stride != 1 || inputChannels != outputChannels
      ? Sequential([
        ("0", convolution(inputChannels, outputChannels, kernel: 1, stride: stride, fan: .fanIn)), ("1", BatchNorm2d(channels: outputChannels)),
      ]) : nil
    self.survival = survival
  }

  /// `conv1` (the variant), `conv2`, `bn2`, `se` and `shortcut` when present.
  public var children: [(name: String, module: any Module)] {
    [("conv1", first), ("conv2", conv2), ("bn2", bn2)] + (squeeze.map { [("se", $0)] } ?? []) + (shortcut.map { [("shortcut", $0)] } ?? [])
  }

  /// The block applied to `input`.
  public func callAsFunction(_ x: Variable) -> Variable {
    let identity = shortcut?(x) ?? x
    var keep = 1.0
    if survival < 1 {
      if LearningPhase.current == .training {
        if Tensor(randomUniform: [1], dtype: .float64).scalar >= survival { return relu(identity) }
      } else {
        keep = survival
      }
    }
    let c = first(x, followedByReLUAnd: conv2)
    guard let squeeze else { return keep == 1 ? bn2(c, adding: identity, applyingReLU: true) : addReLU(bn2(c) * keep, identity) }
    guard keep == 1 else { return addReLU(squeeze(bn2(c)) * keep, identity) }
    return bn2(c, excitation: squeeze.excitation, adding: identity)
  }
}

/// Squeeze-and-excitation (Hu et al. 2018): global average pool, linear C to C/r (no bias), ReLU,
/// linear C/r to C (no bias), sigmoid, and a scale per channel.
public final class SqueezeExcitation: Layer {
  let reduce: Linear, expand: Linear

  init(channels: Int, reduction: Int) {
    reduce = Linear(inputFeatures: channels, outputFeatures: channels / reduction, bias: false)
    expand = Linear(inputFeatures: channels / reduction, outputFeatures: channels, bias: false)
  }

  /// `fc.0` and `fc.2` (PyTorch's Sequential indices).
  public var children: [(name: String, module: any Module)] { [("fc.0", reduce), ("fc.2", expand)] }

  /// `input` scaled per image and channel.
  public func callAsFunction(_ input: Variable) -> Variable { input * scales(input) }

  /// The factors by which `input` [N, C, H, W] is scaled, [N, C, 1, 1].
  public func scales(_ input: Variable) -> Variable { excitation(mean(input, alongAxes: [2, 3])) }

  /// The factors [N, C, 1, 1] from a feature map's pooled means [N, C]: a residual block applies
  /// them with its batch normalisation, sum and ReLU (`BatchNorm2d`'s `callAsFunction(_:excitation:adding:)`).
  public func excitation(_ means: Variable) -> Variable {
    let s = means.shape
    return reshape(sigmoid(expand(relu(reduce(reshape(means, to: [s[0], s[1]]))))), to: [s[0], s[1], 1, 1])
  }
}
