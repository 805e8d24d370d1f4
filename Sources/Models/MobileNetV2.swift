import Autograd
import NN
import TensorModule

/// MobileNetV2 (Sandler et al. 2018), torchvision's layout at width 1.0 with the Multiception
/// repository's CIFAR stem (stride 1), and a convolution variant in place of the depthwise and
/// projection convolutions of the first two rows of the table (docs/models.md).
///
/// | row | t | c    | n | s | with a variant                                      |
/// |-----|---|------|---|---|-----------------------------------------------------|
/// | 1   | 1 | 16   | 1 | 1 | variant(32 → 16, kernels 3, 5, 7), ReLU, BN          |
/// | 2   | 6 | 24   | 2 | 2 | expand 1x1, variant(144 → 24, kernels 3, 5), ReLU, BN |
/// | 3–7 | 6 | 32, 64, 96, 160, 320 | 3, 4, 3, 3, 1 | 2, 2, 1, 2, 1 | the ordinary inverted residual |
///
/// With `.standard` every row is the ordinary inverted residual (expand, depthwise 3x3, linear
/// projection). Then a 1x1 conv to 1280, global pooling, dropout 0.2 and the classifier.
public final class MobileNetV2: Network {
  /// The stages in order, as `reprise summary` lists them.
  public let stages: [(name: String, layer: any Layer)]
  private let features: Sequential, classifier: Sequential

  /// He-normal (fan-out) convolutions with zero biases, BN 1 and 0, classifier Normal(0, 0.01), bias 0.
  public init(convolution: ConvolutionVariant, classCount: Int = 10, inputChannels: Int = 3) {
    let table = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    let kernels: [[Int]?] = convolution == .standard ? [] : [[3, 5, 7], [3, 5]]
    var layers: [any Layer] = [ConvBNReLU6(inputChannels, 32, kernel: 3, stride: 1)]
    var width = 32
    for (row, (t, c, n, s)) in table.enumerated() {
      for i in 0..<n {
        layers.append(
          InvertedResidual(
            inputChannels: width, outputChannels: c, stride: i == 0 ? s : 1, expansion: t,
            variant: row < kernels.count ? kernels[row].map { (convolution, $0) } : nil))
        width = c
      }
    }
    layers.append(ConvBNReLU6(width, 1280, kernel: 1, stride: 1))
    features = Sequential(layers)
    let fc = Linear(inputFeatures: 1280, outputFeatures: classCount, initializer: .normal(standardDeviation: 0.01))
    fc.bias!.value = Tensor(zeros: [classCount])
    classifier = Sequential([Dropout(probability: 0.2), fc])
    stages = features.layers.map { ("features.\($0.name)", $0.layer) } + [("pool", GlobalAvgPool2d()), ("classifier", classifier)]
  }

  /// `features` and `classifier`.
  public var children: [(name: String, module: any Module)] { [("features", features), ("classifier", classifier)] }

  /// Every inverted residual block a region that keeps nothing.
  public func memoryEfficientPlan() -> CheckpointPlan { .units(of: self) { $0.module is InvertedResidual ? .nothing : nil } }
}

/// conv (no bias), BN, ReLU6: torchvision's `Conv2dNormActivation` (children `0`, `1`, `2`), the
/// ReLU6 computed in the BN's pass (one pass over the map fewer each way, and one map fewer kept).
/// One unit for a checkpoint plan: the normalised map before the ReLU6 is never a tensor of its own.
public final class ConvBNReLU6: Layer {
  let conv: Conv2d, norm: BatchNorm2d, activation = ReLU6()

  init(_ input: Int, _ output: Int, kernel: Int, stride: Int, groups: Int = 1) {
    conv = convolution(input, output, kernel: kernel, stride: stride, groups: groups, fan: .fanOut)
    norm = BatchNorm2d(channels: output)
  }

  /// `0` (the convolution), `1` (the BN) and `2` (the ReLU6), torchvision's names.
  public var children: [(name: String, module: any Module)] { [("0", conv), ("1", norm), ("2", activation)] }

  /// relu6(bn(conv(input))).
  public func callAsFunction(_ input: Variable) -> Variable { norm(conv(input), applyingReLU: true, ceiling: 6, statistics: nil) }
}

/// The inverted residual block: 1x1 expansion (when t ≠ 1), depthwise 3x3 and linear 1x1 projection
/// with BN, or, with a variant, the variant from the expanded channels to the output, ReLU and BN.
/// The input is added when the stride is 1 and the widths agree.
public final class InvertedResidual: Layer {
  let conv: Sequential
  let residual: Bool
  /// `conv`'s layers but the last, and that layer, the projection's batch normalisation: a block
  /// with the residual adds it in the normalisation's pass (`norm(body(x), adding: x)`).
  let body: [any Layer], norm: BatchNorm2d

  init(inputChannels: Int, outputChannels: Int, stride: Int, expansion: Int, variant: (ConvolutionVariant, [Int])?) {
    let hidden = inputChannels * expansion
    var layers: [any Layer] = expansion == 1 ? [] : [ConvBNReLU6(inputChannels, hidden, kernel: 1, stride: 1)]
    if let (kind, kernels) = variant {
      layers += [
        kind.make(inputChannels: hidden, outputChannels: outputChannels, stride: stride, kernels: kernels, fan: .fanOut, zeroBias: true),
        ReLU(),
      ]
    } else {
      layers += [ConvBNReLU6(hidden, hidden, kernel: 3, stride: stride, groups: hidden), convolution(hidden, outputChannels, kernel: 1, fan: .fanOut)]
    }
    norm = BatchNorm2d(channels: outputChannels)
    body = layers
    conv = Sequential(layers + [norm])
    residual = stride == 1 && inputChannels == outputChannels
  }

  /// `conv` (torchvision's name), numbered within.
  public var children: [(name: String, module: any Module)] { [("conv", conv)] }

  /// The block applied to `input`.
  public func callAsFunction(_ x: Variable) -> Variable { residual ? norm(body.reduce(x) { $1($0) }, adding: x) : conv(x) }
}
