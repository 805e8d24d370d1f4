import TensorModule

/// Training-mode batch normalisation and ReLU followed by a convolution (the pre-activation
/// pattern), as one operation that keeps only its input.
///
/// A fused primitive rather than a composite, because memory demands it: composed,
/// `conv2d(batchNorm(x, applyingReLU: true).output, w)` keeps the normalised map for the
/// convolution's weight gradient and the ReLU mask, one more feature map per use. Fused, the
/// pullback recomputes the normalised map from the input in one element-wise pass: a checkpoint of
/// the normalisation alone, which does not replay the convolution as a region around all three
/// would. Pre-activation layers over a shared feature buffer (memory-efficient DenseNets,
/// sequentially aggregated convolutions) then keep nothing per layer beyond their outputs.
/// The kernels are TensorModule's `batchNormReLUConv2d` and `batchNormReLUConv2dBackward`, which
/// normalise straight into the padded planes of a stride-1 3x3 convolution. Values and gradients
/// are bit-identical to the composition's; `Tests/AutogradTests` and `Tests/TensorTests` check it.
///
/// The pullback does not need the output, so in a checkpoint replay it is computed only if read
/// (checkpoint rule 10): the last unit of a region costs only its statistics in the replay.
///
/// The caller updates running statistics from the returned batch mean and biased variance.
/// - `statistics`: `input`'s batch statistics when the caller already has them, as for
///   ``batchNorm(_:weight:bias:epsilon:applyingReLU:ceiling:statistics:)``.
/// - Returns: the convolution's output and the batch mean and biased variance per input channel.
public func batchNormReLUConv2d(
  _ input: Variable, normWeight: Variable, normBias: Variable, epsilon: Double = 1e-5,
  convWeight: Variable, stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1, groups: Int = 1,
  statistics: (mean: Tensor, variance: Tensor)? = nil
) -> (output: Variable, mean: Tensor, variance: Tensor) {
  let x = input.value, gamma = normWeight.value, beta = normBias.value, w = convWeight.value
  let (mean, variance) = batchStatistics(x, given: statistics, "batchNormReLUConv2d")
  let shape = conv2dOutputShape(input: x.shape, weight: w.shape, stride: stride, padding: padding, dilation: dilation, groups: groups)
  // In a checkpoint replay the pullback runs as soon as the replay ends, so the normalised map that
  // computing the value needed is kept for it rather than computed a third time.
  let kept = ReplayKept()
  let compute = {
    countMultiplyAccumulates(shape.reduce(1, *) * w.shape[1] * w.shape[2] * w.shape[3])
    guard Context.current.replaying != nil else {
      return TensorModule.batchNormReLUConv2d(
        x, mean: mean, variance: variance, normWeight: gamma, normBias: beta, epsilon: epsilon, convWeight: w,
        stride: stride, padding: padding, dilation: dilation, groups: groups)
    }
    let a = batchNormalized(x, mean: mean, variance: variance, weight: gamma, bias: beta, epsilon: epsilon, applyingReLU: true)
    kept.tensor = a
    return TensorModule.conv2d(a, w, stride: stride, padding: padding, dilation: dilation, groups: groups)
  }
  let inputs = [input, normWeight, normBias, convWeight], sink = input.gradientSink, accumulated = AccumulatedGradient(input)
  let output = recordOperation("batchNormReLUConv2d", deferring: compute, shape: shape, dtype: x.dtype, inputs: inputs) { grad in
    guard kept.tensor != nil else {
      if let destination = sink?.destination(like: x) ?? accumulated?.destination(like: x) {
        let g = batchNormReLUConv2dBackward(
          grad, input: x, mean: mean, variance: variance, normWeight: gamma, normBias: beta, epsilon: epsilon,
          convWeight: w, stride: stride, padding: padding, dilation: dilation, groups: groups, into: destination)
        checkSent(destination, "batchNormReLUConv2d")
        return [nil, g.normWeight, g.normBias, g.convWeight]
      }
      let g = batchNormReLUConv2dBackward(
        grad, input: x, mean: mean, variance: variance, normWeight: gamma, normBias: beta, epsilon: epsilon,
        convWeight: w, stride: stride, padding: padding, dilation: dilation, groups: groups)
      return [g.input, g.normWeight, g.normBias, g.convWeight]
    }
    // The kept map lives only in this closure: it is freed before the batch-norm backward pass.
    let (da, dw) = {
      let a = kept.tensor!
      kept.tensor = nil
      return conv2dBackward(grad, input: a, weight: w, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }()
    // Asked for only now, so that gradients it creates for pieces are not allocated beside the kept map.
    if let destination = sink?.destination(like: x) ?? accumulated?.destination(like: x) {
      let g = batchNormBackward(
        da, x, mean: mean, variance: variance, weight: gamma, bias: beta, epsilon: epsilon, applyingReLU: true, into: destination)
      checkSent(destination, "batchNormReLUConv2d")
      return [nil, g.weight, g.bias, dw]
    }
    let g = batchNormBackward(da, x, mean: mean, variance: variance, weight: gamma, bias: beta, epsilon: epsilon, applyingReLU: true)
    return [g.input, g.weight, g.bias, dw]
  }
  return (output, mean, variance)
}

/// A tensor an operation's replay keeps for its pullback.
private final class ReplayKept {
  var tensor: Tensor?
}
