import Autograd
import NN
import TensorModule

/// What network slimming (Liu et al., "Learning Efficient Convolutional Networks through Network
/// Slimming", ICCV 2017) removed from a network: ``DenseNet/pruned(ratio:)`` and
/// ``ResNet/pruned(ratio:)``.
public struct PruningReport: Sendable, Equatable {
  /// Channels the pruned batch normalisations had.
  public var channels: Int
  /// Channels removed.
  public var removed: Int
  /// The largest |γ| removed: every removed channel's |γ| is at most this, and every kept one's at
  /// least this (0 when nothing was removed).
  public var threshold: Double
}

/// The channels network slimming keeps of each group of batch-norm scales γ: one global ranking of
/// |γ| over all groups, from which the `ratio` fraction of all channels with the smallest |γ| go
/// (rounded down; ties broken by group, then channel, so the choice is deterministic). A group
/// never loses every channel: it keeps its largest, and the layer stays a layer.
///
/// The official code removes the channels with |γ| not above the quantile, which with ties (as
/// at initialisation, where every γ is 1) can remove every channel; ranking removes exactly the
/// fraction asked.
///
/// - Precondition: `ratio` is in [0, 1).
func slimmingSelection(_ scales: [Tensor], ratio: Double) -> (kept: [[Int]], report: PruningReport) {
  require((0..<1).contains(ratio), "pruning: ratio \(ratio) is not in [0, 1)")
  let magnitudes = scales.map { $0.scalars(as: Double.self).map(\.magnitude) }
  var ranked = magnitudes.enumerated().flatMap { g, values in values.indices.map { (value: values[$0], group: g, channel: $0) } }
  ranked.sort { ($0.value, $0.group, $0.channel) < ($1.value, $1.group, $1.channel) }
  var removed = magnitudes.map { [Bool](repeating: false, count: $0.count) }
  for entry in ranked.prefix(Int((ratio * Double(ranked.count)).rounded(.down))) { removed[entry.group][entry.channel] = true }
  for g in removed.indices where removed[g].allSatisfy({ $0 }) && !removed[g].isEmpty {
    let largest = magnitudes[g].indices.max { magnitudes[g][$0] < magnitudes[g][$1] }!
    removed[g][largest] = false
  }
  let kept = removed.map { flags in flags.indices.filter { !flags[$0] } }
  let gone = ranked.filter { removed[$0.group][$0.channel] }
  return (kept, PruningReport(channels: ranked.count, removed: gone.count, threshold: gone.map(\.value).max() ?? 0))
}

/// The slices of `tensor` at `indices` along `axis`, or `tensor` when `indices` is nil.
private func selecting(_ tensor: Tensor, _ indices: [Int]?, alongAxis axis: Int) -> Tensor {
  guard let indices else { return tensor }
  return indexSelect(tensor, IndexTensor(indices), alongAxis: axis)
}

/// Copies `source`'s parameters, running statistics and counter at `channels` (all when nil) into
/// `target`, a batch normalisation of as many channels.
func copyBatchNorm(_ source: BatchNorm2d, channels: [Int]?, into target: BatchNorm2d) {
  for (from, to) in zip(source.parameters + source.namedBuffers.map(\.variable), target.parameters + target.namedBuffers.map(\.variable)) {
    to.value = selecting(from.value, channels, alongAxis: 0)
  }
  target.setBatchesTracked(source.batchesTracked)
}

/// Copies `source`'s weight at `outputs` and `inputs` (all when nil), and its bias at `outputs`,
/// into `target`, a convolution of as many channels.
func copyConvolution(_ source: Conv2d, outputs: [Int]?, inputs: [Int]?, into target: Conv2d) {
  target.weight.value = selecting(selecting(source.weight.value, outputs, alongAxis: 0), inputs, alongAxis: 1)
  if let bias = source.bias, let targetBias = target.bias { targetBias.value = selecting(bias.value, outputs, alongAxis: 0) }
}
