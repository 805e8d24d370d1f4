import Autograd
import TensorModule

/// `conv(relu(norm(input)))`, the pre-activation unit of DenseNets and sequentially aggregated
/// convolutions. In training it is one operation that keeps only `input`
/// (`Autograd/batchNormReLUConv2d(_:normWeight:normBias:epsilon:convWeight:stride:padding:dilation:groups:)`):
/// the normalised map is recomputed in the backward pass instead of stored, and the convolution is
/// not replayed. Values, gradients and running statistics equal the composition's bit for bit.
///
/// - `statistics`: `input`'s batch statistics when the caller already has them, as for
///   ``BatchNorm2d/callAsFunction(_:applyingReLU:ceiling:statistics:)``.
public func batchNormReLUConv(
  _ input: Variable, norm: BatchNorm2d, conv: Conv2d, statistics: (mean: Tensor, variance: Tensor)? = nil
) -> Variable {
  guard LearningPhase.current == .training else { return conv(norm(input, applyingReLU: true)) }
  norm.checkInput(input)
  let (y, mean, variance) = batchNormReLUConv2d(
    input, normWeight: norm.weight, normBias: norm.bias, epsilon: norm.epsilon, convWeight: conv.weight,
    stride: conv.stride, padding: conv.padding, dilation: conv.dilation, groups: conv.groups,
    statistics: statistics ?? norm.batchStatistics(of: input))
  norm.updateRunningStatistics(mean: mean, variance: variance, of: input)
  guard let bias = conv.bias else { return y }
  return y + reshape(bias, to: [1, -1, 1, 1])
}
