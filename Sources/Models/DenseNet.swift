import Autograd
import NN
import TensorModule

/// DenseNet and DenseNet-BC.
///
/// Original papers: "Densely Connected Convolutional Networks", Huang, Liu, van der Maaten and
/// Weinberger, CVPR 2017; "Memory-Efficient Implementation of DenseNets", Pleiss, Chen, Huang, Li,
/// van der Maaten and Weinberger, 2017. Specification: docs/models.md.
///
/// | stage        | CIFAR                         | ImageNet                                  |
/// |--------------|-------------------------------|-------------------------------------------|
/// | stem         | conv 3x3, c0                  | conv 7x7/2, c0, BN, ReLU, max-pool 3x3/2  |
/// | dense blocks | 3 equal blocks                | 4 blocks (6, 12, 24, 16 for DenseNet-121) |
/// | transitions  | BN, ReLU, conv 1x1 θc, avg-pool 2x2 after every block but the last       |
/// | head         | BN, ReLU, global average pool, linear                                     |
///
/// Parameter and buffer names are torchvision's state-dict keys. A block's features live in one
/// growing buffer (`FeatureBuffer`), so a layer's input is a view, not a concatenation. Its units
/// are fused BN-ReLU-conv operations: the normalised map is computed on the way into the
/// convolution (the 3x3 convolution's padded planes, the 1x1 products' chunks) in both directions
/// and never kept. The 1x1 bottleneck units tag their output `bottleneck` for checkpoint
/// policies. How the network is checkpointed is a plan applied to it:
/// ``memoryEfficientPlan(keptBottleneckFraction:)`` is Pleiss et al.'s. A network pruned by network
/// slimming (``pruned(ratio:)``) is a DenseNet whose configuration says which input channels each
/// normalisation keeps (``DenseNetPruning``).
public final class DenseNet: Network {
  /// The feature extractor: `conv0`, (`norm0`), `denseblock1`, `transition1`, ..., `norm5`.
  public let features: ModuleContainer
  /// The linear classifier.
  public let classifier: Linear
  /// The configuration it was built from.
  public let configuration: DenseNetConfiguration
  /// The stages in order, as `reprise summary` lists them.
  public let stages: [(name: String, layer: any Layer)]

  /// A DenseNet as configured, initialised as the official code does (He-normal convolutions, fan-out
  /// for the CIFAR models as the official code, fan-in for the ImageNet models as torchvision; BN
  /// 1 and 0; linear bias 0).
  public init(_ configuration: DenseNetConfiguration) {
    self.configuration = configuration
    let c = configuration, k = c.growthRate, fan: Initializer.Fan = c.stem == .imagenet ? .fanIn : .fanOut
    var stages: [(String, any Layer)] = []
    var modules: [(String, any Module)] = []
    func add(_ name: String, _ layer: any Layer, named: Bool = true) {
      stages.append(("features." + name, layer))
      if named { modules.append((name, layer)) }
    }
    var width = c.initialChannels
    if c.stem == .imagenet {
      add("conv0", Conv2d(inputChannels: c.inputChannels, outputChannels: width, kernelSize: 7, stride: 2, padding: 3, bias: false, initializer: .kaimingNormal(fan)))
      add("norm0", BatchNorm2d(channels: width))
      add("relu0", ReLU(), named: false)
      add("pool0", MaxPool2d(kernelSize: 3, stride: 2, padding: 1), named: false)
    } else {
      add("conv0", Conv2d(inputChannels: c.inputChannels, outputChannels: width, kernelSize: 3, padding: 1, bias: false, initializer: .kaimingNormal(fan)))
    }
    for (b, layerCount) in c.blocks.enumerated() {
      add("denseblock\(b + 1)", DenseBlock(layerCount: layerCount, inputChannels: width, configuration: c, block: b, fan: fan))
      width += layerCount * k
      if b < c.blocks.count - 1 {
        let out = Int((Double(width) * c.compression).rounded(.down))
        let transition = Transition(
          inputChannels: width, keptInputs: c.pruning?.transitions[b], outputChannels: out, configuration: c, fan: fan)
        add("transition\(b + 1)", transition)
        width = out
      }
    }
    if let kept = c.pruning?.final {
      add("select5", ChannelSelection(kept), named: false)
      width = kept.count
    }
    add("norm5", BatchNorm2d(channels: width))
    stages += [("features.relu5", ReLU()), ("pool", GlobalAvgPool2d())]
    features = ModuleContainer(modules)
    classifier = Linear(inputFeatures: width, outputFeatures: c.classCount)
    classifier.bias.map { $0.value = Tensor(zeros: $0.shape) }
    stages.append(("classifier", classifier))
    self.stages = stages
  }

  /// `features` and `classifier`.
  public var children: [(name: String, module: any Module)] { [("features", features), ("classifier", classifier)] }

  /// The memory-efficient implementation of Pleiss et al. as a checkpoint plan: every dense layer
  /// is a region. Their aim, no normalised map of the concatenation kept (the part that grows
  /// quadratically in depth), the fused units meet without a plan; the regions drop what is left,
  /// the layers' 4k-channel bottleneck outputs, which the backward pass recomputes.
  ///
  /// - Parameter keptBottleneckFraction: the fraction of each block's layers, the last ones, whose
  ///   region keeps its 4k-channel bottleneck output (policy: the name `bottleneck`) instead of
  ///   recomputing it. A layer's recomputation costs in proportion to its input width, which grows
  ///   through the block, while its bottleneck output has the same size in every layer of the
  ///   block: the last layers save the most time per byte kept. 0 keeps the least (each layer's k
  ///   new channels); 1 keeps every bottleneck output, as Pleiss et al. and torchvision's
  ///   `memory_efficient` do. The number of layers is rounded down. Transitions with dropout, whose
  ///   normalised map would be kept for the convolution, are regions too.
  /// - Precondition: `keptBottleneckFraction` is in [0, 1].
  public func memoryEfficientPlan(keptBottleneckFraction: Double = 0.5) -> CheckpointPlan {
    require(
      (0...1).contains(keptBottleneckFraction), "DenseNet: kept bottleneck fraction \(keptBottleneckFraction) is not in [0, 1]")
    return .units(of: self) { unit in
      if let transition = unit.module as? Transition { return transition.dropout == nil ? nil : .nothing }
      guard unit.module is DenseLayer else { return nil }
      let kept = configuration.bottleneck ? Int((keptBottleneckFraction * Double(unit.siblingCount)).rounded(.down)) : 0
      return unit.index >= unit.siblingCount - kept ? .saving(names: ["bottleneck"]) : .nothing
    }
  }

  /// ``memoryEfficientPlan(keptBottleneckFraction:)`` with half the bottlenecks kept.
  public func memoryEfficientPlan() -> CheckpointPlan { memoryEfficientPlan(keptBottleneckFraction: 0.5) }
}

/// A dense block: each layer reads every earlier feature map and appends `growthRate` new ones.
public final class DenseBlock: Chain, Layer {
  /// The layers, `denselayer1`, `denselayer2`, ...
  public let layers: [DenseLayer]
  let capacity: Int

  init(layerCount: Int, inputChannels: Int, configuration c: DenseNetConfiguration, block: Int, fan: Initializer.Fan) {
    layers = (0..<layerCount).map { i in
      DenseLayer(
        inputChannels: inputChannels + i * c.growthRate, keptInputs: c.pruning?.layers[block][i],
        bottleneckWidth: c.pruning?.bottlenecks?[block][i] ?? c.bottleneckFactor * c.growthRate, configuration: c, fan: fan,
        name: "denselayer\(i + 1)")
    }
    capacity = inputChannels + layerCount * c.growthRate
  }

  /// `denselayer1`, `denselayer2`, ...
  public var children: [(name: String, module: any Module)] { layers.map { ($0.name, $0) } }

  /// The layers, the units a checkpoint plan may make regions.
  public var units: [(name: String, module: any Module)] { children }

  /// The block input followed by every layer's new channels.
  ///
  /// In training each layer's first normalisation takes its window's batch statistics from the
  /// buffer, which computes each feature map's once (not once per later layer).
  public func callAsFunction(_ input: Variable) -> Variable {
    let buffer = FeatureBuffer(capacity: capacity, first: input)
    let training = LearningPhase.current == .training
    for layer in layers {
      let window = 0..<buffer.channelCount
      let statistics = training ? buffer.batchStatistics(window) : nil
      buffer.append(checkpointUnit(layer, buffer.window(window)) { layer($0, statistics: statistics) })
    }
    return buffer.features
  }
}

/// BN-ReLU-conv 1x1 (4k, the bottleneck) then BN-ReLU-conv 3x3 (k) for DenseNet-BC; BN-ReLU-conv 3x3
/// (k) for plain DenseNet. Dropout follows each convolution when the drop rate is positive. A
/// pruned layer reads only the input channels it keeps.
public final class DenseLayer: Layer {
  let name: String
  let selection: ChannelSelection?
  let norm1: BatchNorm2d, conv1: Conv2d
  let norm2: BatchNorm2d?, conv2: Conv2d?
  let dropout: Dropout?

  init(
    inputChannels: Int, keptInputs: [Int]?, bottleneckWidth: Int, configuration c: DenseNetConfiguration, fan: Initializer.Fan,
    name: String
  ) {
    self.name = name
    let k = c.growthRate, width = keptInputs?.count ?? inputChannels
    selection = keptInputs.map(ChannelSelection.init)
    norm1 = BatchNorm2d(channels: width)
    if c.bottleneck {
      conv1 = Conv2d(inputChannels: width, outputChannels: bottleneckWidth, kernelSize: 1, bias: false, initializer: .kaimingNormal(fan))
      norm2 = BatchNorm2d(channels: bottleneckWidth)
      conv2 = Conv2d(inputChannels: bottleneckWidth, outputChannels: k, kernelSize: 3, padding: 1, bias: false, initializer: .kaimingNormal(fan))
    } else {
      conv1 = Conv2d(inputChannels: width, outputChannels: k, kernelSize: 3, padding: 1, bias: false, initializer: .kaimingNormal(fan))
      (norm2, conv2) = (nil, nil)
    }
    dropout = c.dropRate > 0 ? Dropout(probability: c.dropRate) : nil
  }

  /// `norm1`, `conv1` and, for BC layers, `norm2`, `conv2` (torchvision's names).
  public var children: [(name: String, module: any Module)] {
    [("norm1", norm1), ("conv1", conv1)] + (norm2.map { [("norm2", $0), ("conv2", conv2!)] } ?? [])
  }

  /// The new channels computed from the concatenation of all earlier ones.
  public func callAsFunction(_ features: Variable) -> Variable { callAsFunction(features, statistics: nil) }

  /// The new channels, with the batch statistics of `features` when the caller has them (see
  /// `BatchNorm2d/callAsFunction(_:applyingReLU:ceiling:statistics:)`).
  public func callAsFunction(_ features: Variable, statistics: (mean: Tensor, variance: Tensor)?) -> Variable {
    func unit(_ x: Variable, _ norm: BatchNorm2d, _ conv: Conv2d, _ statistics: (mean: Tensor, variance: Tensor)?) -> Variable {
      let y = batchNormReLUConv(x, norm: norm, conv: conv, statistics: statistics)
      let named = conv.weight.shape[2...] == [1, 1] ? checkpointName(y, "bottleneck") : y
      return dropout?(named) ?? named
    }
    let h =
      selection.map { unit($0(features), norm1, conv1, statistics.map($0.select)) } ?? unit(features, norm1, conv1, statistics)
    guard let norm2, let conv2 else { return h }
    return unit(h, norm2, conv2, nil)
  }
}

/// BN-ReLU-conv 1x1 (compression) and 2x2 average pooling between dense blocks.
///
/// Without dropout the pooling comes before the convolution: a 1x1 convolution without bias and a
/// 2x2 average commute (each output is a weighted sum over channels of an average over pixels,
/// either way round), so this is the same function with a quarter of the convolution's
/// multiply-adds (9% of DenseNet-BC-100's arithmetic saved) and only the pooled map kept for its
/// weight gradient; the sums are added in a different order, so values differ from conv-then-pool
/// by rounding. Dropout acts on the convolution's full-size output, so with dropout the order is the
/// papers'. A pruned transition reads only the input channels it keeps.
public final class Transition: Layer {
  let selection: ChannelSelection?
  let norm: BatchNorm2d, conv: Conv2d, dropout: Dropout?

  init(inputChannels: Int, keptInputs: [Int]?, outputChannels: Int, configuration c: DenseNetConfiguration, fan: Initializer.Fan) {
    selection = keptInputs.map(ChannelSelection.init)
    let width = keptInputs?.count ?? inputChannels
    norm = BatchNorm2d(channels: width)
    conv = Conv2d(inputChannels: width, outputChannels: outputChannels, kernelSize: 1, bias: false, initializer: .kaimingNormal(fan))
    dropout = c.dropRate > 0 ? Dropout(probability: c.dropRate) : nil
  }

  /// `norm` and `conv`.
  public var children: [(name: String, module: any Module)] { [("norm", norm), ("conv", conv)] }

  /// The compressed, down-sampled features.
  public func callAsFunction(_ features: Variable) -> Variable {
    let input = selection?(features) ?? features
    guard let dropout else {
      let normalized = norm(input, applyingReLU: true)
      // Counted as the papers define it: the convolution over the full-size map.
      let positions = normalized.shape[0] * normalized.shape[2] * normalized.shape[3]
      return countingAsDefined(positions * conv.weight.shape[0] * conv.weight.shape[1]) {
        conv(avgPool2d(normalized, kernelSize: 2))
      }
    }
    return avgPool2d(dropout(conv(norm(input, applyingReLU: true))), kernelSize: 2)
  }
}
