import Autograd
import NN
import TensorModule

/// The channels a DenseNet pruned by network slimming keeps: which input channels each batch
/// normalisation reads, and how wide each bottleneck is.
///
/// In a DenseNet every normalisation comes before its convolution and reads features that later
/// layers read too, so a channel one layer drops stays in the features for the others: a pruned
/// layer gathers the channels it keeps once (`ChannelSelection`), and its normalisation and
/// convolution have only those. A DenseNet-BC bottleneck's normalisation follows its 1x1
/// convolution, which then simply has fewer outputs.
public struct DenseNetPruning: Sendable, Equatable, Codable {
  /// For each dense block, for each layer: the channels of the layer's input (the block's features
  /// so far) that its first normalisation keeps, increasing.
  public var layers: [[[Int]]]
  /// For each dense block, for each layer of a DenseNet-BC: the width of its bottleneck (the 1x1
  /// convolution's outputs); nil for plain DenseNet.
  public var bottlenecks: [[Int]]?
  /// For each transition: the input channels its normalisation keeps, increasing.
  public var transitions: [[Int]]
  /// The channels the final normalisation keeps (the classifier's inputs), increasing.
  public var final: [Int]

  /// A pruning from its parts.
  public init(layers: [[[Int]]], bottlenecks: [[Int]]?, transitions: [[Int]], final: [Int]) {
    (self.layers, self.bottlenecks, self.transitions, self.final) = (layers, bottlenecks, transitions, final)
  }
}

extension DenseNetConfiguration {
  /// The full network's channel counts: each block's input width, and the final width.
  var widths: (blockInputs: [Int], final: Int) {
    var width = initialChannels, inputs: [Int] = []
    for (b, layerCount) in blocks.enumerated() {
      inputs.append(width)
      width += layerCount * growthRate
      if b < blocks.count - 1 { width = Int((Double(width) * compression).rounded(.down)) }
    }
    return (inputs, width)
  }

  /// Throws unless ``pruning`` fits the network: one selection per layer, transition and the end,
  /// each a strictly increasing, non-empty list of channels that exist, and bottleneck widths
  /// from 1 to the full width (for DenseNet-BC only).
  func checkPruning() throws {
    guard let pruning else { return }
    let (inputs, final) = widths
    func check(_ kept: [Int], width: Int, _ place: String) throws {
      guard let first = kept.first, first >= 0, kept.last! < width, zip(kept, kept.dropFirst()).allSatisfy({ $0 < $1 }) else {
        throw ModelError.invalid("pruning: \(place) must keep a strictly increasing, non-empty list of channels in 0..<\(width)")
      }
    }
    guard pruning.layers.map(\.count) == blocks, pruning.transitions.count == blocks.count - 1 else {
      throw ModelError.invalid("pruning: selections for \(pruning.layers.map(\.count)) layers and \(pruning.transitions.count) transitions, expected \(blocks) and \(blocks.count - 1)")
    }
    guard (pruning.bottlenecks != nil) == bottleneck, pruning.bottlenecks.map({ $0.map(\.count) == blocks }) ?? true,
      pruning.bottlenecks?.joined().allSatisfy({ (1...bottleneckFactor * growthRate).contains($0) }) ?? true
    else { throw ModelError.invalid("pruning: bottleneck widths must be given, each in 1...\(bottleneckFactor * growthRate), exactly for DenseNet-BC's layers") }
    for (b, layers) in pruning.layers.enumerated() {
      for (i, kept) in layers.enumerated() { try check(kept, width: inputs[b] + i * growthRate, "block \(b + 1) layer \(i + 1)") }
      if b < pruning.transitions.count { try check(pruning.transitions[b], width: inputs[b] + blocks[b] * growthRate, "transition \(b + 1)") }
    }
    try check(pruning.final, width: final, "the final normalisation")
  }
}

extension DenseNet {
  /// A thinner network by network slimming (Liu et al. 2017): each normalisation's channels with
  /// the smallest |γ|, the `ratio` fraction of all of them over the whole network, are removed
  /// with what reads them, and the survivors' weights, running statistics and counters are copied.
  /// A pruned network can be pruned again.
  ///
  /// Every normalisation takes part: a dense layer's first (and a transition's, and the final
  /// one) reads fewer input channels; a DenseNet-BC bottleneck's loses its 1x1 convolution's
  /// outputs too. A removed channel's contribution is dropped: for a channel whose γ and β are
  /// both zero that changes nothing, as the normalised value is then 0.
  ///
  /// - Parameter ratio: the fraction of channels to remove, in [0, 1).
  /// - Returns: the network (on the global generator's state as it was: initialisation draws are
  ///   restored) and what was removed.
  public func pruned(ratio: Double) -> (network: DenseNet, report: PruningReport) {
    let blocks = stages.compactMap { $0.layer as? DenseBlock }, transitions = stages.compactMap { $0.layer as? Transition }
    let final = stages.first { $0.name == "features.norm5" }!.layer as! BatchNorm2d
    var groups: [Tensor] = []
    for layer in blocks.flatMap(\.layers) { groups += [layer.norm1.weight.value] + (layer.norm2.map { [$0.weight.value] } ?? []) }
    groups += transitions.map(\.norm.weight.value) + [final.weight.value]
    var (kept, report) = slimmingSelection(groups, ratio: ratio)
    kept.reverse()  // Taken from the end as the network is walked.
    let old = configuration.pruning, (inputs, width) = configuration.widths
    func absolute(_ selection: [Int], within previous: [Int]?) -> [Int] { previous.map { p in selection.map { p[$0] } } ?? selection }
    var pruning = DenseNetPruning(layers: [], bottlenecks: configuration.bottleneck ? [] : nil, transitions: [], final: [])
    var bottleneckChannels: [[[Int]]] = []
    for (b, block) in blocks.enumerated() {
      var layers: [[Int]] = [], widths: [Int] = [], channels: [[Int]] = []
      for (i, layer) in block.layers.enumerated() {
        let previous = old?.layers[b][i] ?? Array(0..<(inputs[b] + i * configuration.growthRate))
        layers.append(absolute(kept.removeLast(), within: previous))
        if layer.norm2 != nil {
          channels.append(kept.removeLast())
          widths.append(channels.last!.count)
        }
      }
      pruning.layers.append(layers)
      pruning.bottlenecks?.append(widths)
      bottleneckChannels.append(channels)
    }
    for (b, _) in transitions.enumerated() {
      pruning.transitions.append(absolute(kept.removeLast(), within: old?.transitions[b] ?? Array(0..<(inputs[b] + configuration.blocks[b] * configuration.growthRate))))
    }
    pruning.final = absolute(kept.removeLast(), within: old?.final ?? Array(0..<width))
    var thinner = configuration
    thinner.pruning = pruning
    let saved = RandomGenerator.global
    let network = DenseNet(thinner)
    RandomGenerator.global = saved
    copyState(into: network, bottleneckChannels: bottleneckChannels)
    return (network, report)
  }

  /// Copies this network's state into `network`, its pruned form: the kept channels are those of
  /// `network`'s selections relative to this network's, and `bottleneckChannels` by block and layer.
  private func copyState(into network: DenseNet, bottleneckChannels: [[[Int]]]) {
    func relative(_ new: ChannelSelection?, _ old: ChannelSelection?) -> [Int]? {
      guard let new else { return nil }
      guard let old else { return new.indices.indices }
      let position = Dictionary(uniqueKeysWithValues: old.indices.indices.enumerated().map { ($1, $0) })
      return new.indices.indices.map { position[$0]! }
    }
    let finalInputs = relative(network.finalSelection, finalSelection)
    func computing(_ n: DenseNet) -> [(name: String, layer: any Layer)] { n.stages.filter { !($0.layer is ChannelSelection) } }
    var block = 0
    for ((name, from), (_, to)) in zip(computing(self), computing(network)) {
      switch (from, to) {
      case let (from as Conv2d, to as Conv2d): copyConvolution(from, outputs: nil, inputs: nil, into: to)
      case let (from as BatchNorm2d, to as BatchNorm2d):
        copyBatchNorm(from, channels: name == "features.norm5" ? finalInputs : nil, into: to)
      case let (from as DenseBlock, to as DenseBlock):
        for (i, (a, z)) in zip(from.layers, to.layers).enumerated() {
          let inputs = relative(z.selection, a.selection), bottleneck = a.norm2 == nil ? nil : bottleneckChannels[block][i]
          copyBatchNorm(a.norm1, channels: inputs, into: z.norm1)
          copyConvolution(a.conv1, outputs: bottleneck, inputs: inputs, into: z.conv1)
          if let norm2 = a.norm2, let conv2 = a.conv2, let norm2z = z.norm2, let conv2z = z.conv2 {
            copyBatchNorm(norm2, channels: bottleneck, into: norm2z)
            copyConvolution(conv2, outputs: nil, inputs: bottleneck, into: conv2z)
          }
        }
        block += 1
      case let (from as Transition, to as Transition):
        let inputs = relative(to.selection, from.selection)
        copyBatchNorm(from.norm, channels: inputs, into: to.norm)
        copyConvolution(from.conv, outputs: nil, inputs: inputs, into: to.conv)
      case let (from as Linear, to as Linear):
        to.weight.value = finalInputs.map { indexSelect(from.weight.value, IndexTensor($0), alongAxis: 1) } ?? from.weight.value
        if let bias = from.bias, let target = to.bias { target.value = bias.value }
      default: break
      }
    }
  }

  /// The selection before the final normalisation of a pruned network.
  var finalSelection: ChannelSelection? { stages.lazy.compactMap { $0.layer as? ChannelSelection }.first }
}
