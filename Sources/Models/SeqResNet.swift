import Autograd
import NN
import TensorModule

/// SeqResNet, SeqResNet-B and SeqResNeXt: pre-activation residual networks built from sequentially
/// aggregated convolutions (Huang, Ou, Wu and Feng, "Sequentially Aggregated Convolutional
/// Networks", ICCV Workshops 2019). Specification: docs/models.md.
///
/// | stage      | CIFAR SeqResNet(k, r, N)                 | ImageNet (B22, B42, ResNeXt-24)                  |
/// |------------|------------------------------------------|--------------------------------------------------|
/// | stem       | conv 3x3, 16                             | conv 3x3/2, 32; conv 3x3, 32                      |
/// | stage 1    | dense head to 16r; N blocks, 32x32       | dense head to C1; shrink 3x3/2; blocks, 56x56      |
/// | stage 2, 3 | down-sampling to 32r, 48r; N blocks      | down-sampling to C2, C3, C4; blocks, 28, 14, 7     |
/// | head       | dropout, blender conv 1x1, pool, linear  | blender conv 1x1, pool, linear                    |
///
/// A residual block is two windowed layers; the second adds the block's raw input to each filter's
/// output before its BN (the shortcut). A down-sampling block extends its input with a windowed
/// layer and shrinks [input | extension] with a strided grouped 3x3 convolution; no identity path
/// crosses it. Parameter names follow the structure: `stage2.block1.layer2.filter3.conv.weight`,
/// `stage2.extension.filter1.conv1.weight`, `stage2.shrink.norm.running_mean`.
public final class SeqResNet: Network {
  /// The configuration it was built from.
  public let configuration: SeqResNetConfiguration
  /// The stages in order, as `reprise summary` lists them.
  public let stages: [(name: String, layer: any Layer)]
  private let modules: [(name: String, module: any Module)]

  /// A network as configured, initialised as the official code does.
  public init(_ configuration: SeqResNetConfiguration) {
    self.configuration = configuration
    let c = configuration
    var stages: [(String, any Layer)] = []
    var width: Int
    if c.stem == .cifar {
      stages.append(("stem", ConvUnit(inputChannels: c.inputChannels, outputChannels: 16, kernelSize: 3)))
      width = 16
    } else {
      stages.append(("stem1", ConvUnit(inputChannels: c.inputChannels, outputChannels: 32, kernelSize: 3, stride: 2)))
      stages.append(("stem2", ConvUnit(inputChannels: 32, outputChannels: 32, kernelSize: 3)))
      width = 32
    }
    for (s, stageWidth) in c.stageWidths.enumerated() {
      stages.append(("stage\(s + 1)", SeqStage(index: s, inputChannels: width, configuration: c)))
      width = stageWidth
    }
    var tail: [(String, any Layer)] = []
    if c.dropRate > 0 { tail.append(("dropout", Dropout2d(probability: c.dropRate))) }
    tail.append(("blender", ConvUnit(inputChannels: width, outputChannels: width, kernelSize: 1)))
    let classifier = Linear(inputFeatures: width, outputFeatures: c.classCount, initializer: .uniform(bound: (3 / Double(c.classCount)).squareRoot()))
    classifier.bias.map { $0.value = Tensor(zeros: $0.shape) }
    tail += [("pool", GlobalAvgPool2d()), ("classifier", classifier)]
    self.stages = stages + tail
    modules = self.stages.filter { !$0.layer.namedParameters.isEmpty }.map { ($0.name, $0.layer) }
  }

  /// The stem, the stages, the blender and the classifier.
  public var children: [(name: String, module: any Module)] { modules }

  /// Every filter a region that keeps nothing.
  public func memoryEfficientPlan() -> CheckpointPlan { .units(of: self) { $0.module is SeqFilter ? .nothing : nil } }
}

/// One stage: its entry (the dense head of the first stage, or a down-sampling block), then
/// residual blocks at the stage's width. It maps activated maps to activated maps; the residual
/// stream lives inside.
public final class SeqStage: Chain, Layer {
  /// The dense head (first stage) or the windowed extension of a down-sampling block.
  let entry: SeqConv
  /// Whether the entry is a down-sampling extension whose input is kept: [input | extension].
  let extends: Bool
  /// The strided grouped 3x3 conv unit after the entry, when the stage has one.
  let shrink: ConvUnit?
  /// The residual blocks.
  public let blocks: [SeqResidualBlock]

  init(index s: Int, inputChannels: Int, configuration c: SeqResNetConfiguration) {
    let width = c.stageWidths[s], k = c.granularities[s], g = c.subgroups[s]
    extends = s > 0
    if s == 0 {
      // The head: a dense layer from the stem, with the first stage's granularity; on ImageNet a
      // shrink halves the resolution.
      entry = SeqConv(
        inputChannels: inputChannels, outputChannels: width, granularity: k, windowed: false, bottleneck: c.bottleneck,
        subgroups: g)
      shrink = c.stem == .imagenet ? ConvUnit(inputChannels: width, outputChannels: width, kernelSize: 3, stride: 2, groups: width / k * g) : nil
    } else {
      // Down-sampling: the extension uses the previous stage's granularity and cardinality.
      entry = SeqConv(
        inputChannels: inputChannels, outputChannels: width - inputChannels, granularity: c.granularities[s - 1], windowed: true,
        bottleneck: c.bottleneck, subgroups: c.subgroups[s - 1], windowDropRate: c.windowDropRate)
      shrink = ConvUnit(inputChannels: width, outputChannels: width, kernelSize: 3, stride: 2, groups: width / k * g)
    }
    blocks = (0..<c.blocksPerStage[s]).map { _ in SeqResidualBlock(width: width, granularity: k, subgroups: g, configuration: c) }
  }

  /// `head` or `extension`, `shrink`, `block1`, `block2`, ...
  public var children: [(name: String, module: any Module)] {
    [(extends ? "extension" : "head", entry)] + (shrink.map { [("shrink", $0)] } ?? [])
      + blocks.enumerated().map { ("block\($0 + 1)", $1) }
  }

  /// The entry, the shrink and the blocks, the units a checkpoint plan may make regions.
  public var units: [(name: String, module: any Module)] { children }

  /// The stage's activated output.
  public func callAsFunction(_ input: Variable) -> Variable {
    func pair(_ v: [Variable]) -> (raw: Variable, activated: Variable) { (v[0], v[1]) }
    var stream: (raw: Variable, activated: Variable)
    if let shrink {
      let entered = checkpointUnit(entry, input) { [entry, extends] in extends ? entry.extending($0) : entry($0) }
      stream = pair(checkpointUnit(shrink, [entered]) { v in let p = shrink.pair(v[0]); return [p.raw, p.activated] })
    } else {
      stream = pair(checkpointUnit(entry, [input]) { [entry] v in let p = entry(v[0], shortcut: nil); return [p.raw, p.activated] })
    }
    for block in blocks {
      stream = pair(checkpointUnit(block, [stream.raw, stream.activated]) { v in let p = block((v[0], v[1])); return [p.raw, p.activated] })
    }
    return stream.activated
  }
}

/// Two windowed layers; the second adds the block's raw input to its filters' outputs before BN,
/// and its last convolutions start at zero (docs/models.md).
public final class SeqResidualBlock: Chain {
  let layer1: SeqConv, layer2: SeqConv

  init(width: Int, granularity k: Int, subgroups g: Int, configuration c: SeqResNetConfiguration) {
    func layer(zero: Bool) -> SeqConv {
      SeqConv(
        inputChannels: width, outputChannels: width, granularity: k, windowed: true, bottleneck: c.bottleneck, subgroups: g,
        zeroInitialized: zero, windowDropRate: c.windowDropRate)
    }
    (layer1, layer2) = (layer(zero: false), layer(zero: true))
  }

  /// `layer1` and `layer2`.
  public var children: [(name: String, module: any Module)] { [("layer1", layer1), ("layer2", layer2)] }

  /// The two layers, the units a checkpoint plan may make regions.
  public var units: [(name: String, module: any Module)] { children }

  /// The block applied to the residual stream (raw) and its activation.
  public func callAsFunction(_ stream: (raw: Variable, activated: Variable)) -> (raw: Variable, activated: Variable) {
    let hidden = checkpointUnit(layer1, stream.activated) { [layer1] in layer1($0) }
    let out = checkpointUnit(layer2, [hidden, stream.raw]) { [layer2] v in let p = layer2(v[0], shortcut: v[1]); return [p.raw, p.activated] }
    return (out[0], out[1])
  }
}
