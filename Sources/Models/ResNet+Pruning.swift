import Autograd
import NN
import TensorModule

extension ResNetConfiguration {
  /// Throws unless ``innerWidths`` fits the network: standard convolutions, one width per block,
  /// each from 1 to its stage's width.
  func checkPruning() throws {
    guard let widths = innerWidths else { return }
    guard convolution == .standard else { throw ModelError.invalid("pruned widths need standard convolutions, not \(convolution.rawValue)") }
    let stageWidths = [16, 32, 64].flatMap { Array(repeating: $0, count: blocksPerStage) }
    guard widths.count == stageWidths.count, zip(widths, stageWidths).allSatisfy({ (1...$1).contains($0) }) else {
      throw ModelError.invalid("pruning: \(widths.count) inner widths, expected \(stageWidths.count), each from 1 to its stage's width (16, 32, 64)")
    }
  }
}

extension ResNet {
  /// A thinner network by network slimming (Liu et al. 2017): of the normalisations inside the
  /// residual blocks (after each block's first convolution), the channels with the smallest |γ|,
  /// the `ratio` fraction of all of them, are removed with the first convolution's outputs and the
  /// second's inputs that carry them, and the survivors' weights and statistics are copied.
  ///
  /// The channels of the residual stream (the stem's, each block's second normalisation's and the
  /// projections') are added to the shortcuts and read by every later block of the stage; removing
  /// one would take selections on both sides of each addition, so they are kept, and take no part
  /// in the ranking. A removed channel's contribution is dropped: for a channel whose γ and β are
  /// both zero that changes nothing.
  ///
  /// - Parameter ratio: the fraction of the blocks' inner channels to remove, in [0, 1).
  /// - Precondition: standard convolutions (`--conv standard`).
  /// - Returns: the network (on the global generator's state as it was) and what was removed.
  public func pruned(ratio: Double) -> (network: ResNet, report: PruningReport) {
    require(configuration.convolution == .standard, "ResNet.pruned: needs standard convolutions, not \(configuration.convolution.rawValue)")
    let blocks = basicBlocks
    let firsts = blocks.map { $0.first as! StandardConvolution }
    let (kept, report) = slimmingSelection(firsts.map(\.bn.weight.value), ratio: ratio)
    var thinner = configuration
    thinner.innerWidths = kept.map(\.count)
    let saved = RandomGenerator.global
    let network = ResNet(thinner)
    RandomGenerator.global = saved
    let newBlocks = network.basicBlocks
    for (stage, newStage) in zip(stages, network.stages) {
      for ((_, from), (_, to)) in zip(stage.layer.namedParameters + stage.layer.namedBuffers, newStage.layer.namedParameters + newStage.layer.namedBuffers)
      where from.shape == to.shape {
        to.value = from.value  // Everything outside the blocks' inner channels, as it is.
      }
      for (from, to) in zip(stage.layer.namedModules, newStage.layer.namedModules) {
        if let from = from.module as? BatchNorm2d, let to = to.module as? BatchNorm2d { to.setBatchesTracked(from.batchesTracked) }
      }
    }
    for ((block, first), (newBlock, channels)) in zip(zip(blocks, firsts), zip(newBlocks, kept)) {
      let newFirst = newBlock.first as! StandardConvolution
      copyConvolution(first.conv, outputs: channels, inputs: nil, into: newFirst.conv)
      copyBatchNorm(first.bn, channels: channels, into: newFirst.bn)
      copyConvolution(block.conv2, outputs: nil, inputs: channels, into: newBlock.conv2)
    }
    return (network, report)
  }

  /// The residual blocks, stage by stage.
  private var basicBlocks: [BasicBlock] { stages.flatMap { ($0.layer as? Sequential)?.layers.compactMap { $0.layer as? BasicBlock } ?? [] } }
}
