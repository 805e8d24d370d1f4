import Autograd
import TensorModule

/// The channels of an [N, C, H, W] input at given indices, in their order: how a network pruned by
/// network slimming (Liu et al. 2017) reads the channels a normalisation keeps out of features that
/// other layers read in full.
///
/// Each kept channel is copied once, into a compact input for the normalisation and convolution that
/// follow, which then have only the kept channels' parameters and work. (The official code keeps the
/// normalisation at full width and selects after it.)
public final class ChannelSelection: Layer {
  /// The kept channels, in increasing order.
  public let indices: IndexTensor

  /// A selection of `indices` (strictly increasing, not negative).
  public init(_ indices: [Int]) {
    require(!indices.isEmpty, "ChannelSelection: no channels")
    require(indices.first! >= 0 && zip(indices, indices.dropFirst()).allSatisfy { $0 < $1 }, "ChannelSelection: indices must increase strictly from 0 or more")
    self.indices = IndexTensor(indices)
  }

  /// The input's channels at ``indices``.
  public func callAsFunction(_ input: Variable) -> Variable {
    require(input.shape.count == 4 && indices.indices.last! < input.shape[1], "ChannelSelection: channels \(indices.indices.last!) of input \(input.shape)")
    return indexSelect(input, indices, alongAxis: 1)
  }

  /// Per-channel statistics of the whole input (as ``FeatureBuffer/batchStatistics(_:)`` computes
  /// them) reduced to the kept channels.
  public func select(_ statistics: (mean: Tensor, variance: Tensor)) -> (mean: Tensor, variance: Tensor) {
    (indexSelect(statistics.mean, indices, alongAxis: 0), indexSelect(statistics.variance, indices, alongAxis: 0))
  }
}
