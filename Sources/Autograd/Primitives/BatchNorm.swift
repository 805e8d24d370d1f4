import TensorModule

/// Training-mode batch normalisation of `input` [N, C, H, W] with the batch's own statistics.
///
/// A fused primitive rather than a composite: as a composition of means, subtractions and
/// products it makes about ten passes over the feature map and keeps several of them for the
/// backward pass; fused it makes three and keeps only the input. `Tests/AutogradTests` checks it
/// against the composite. The caller updates running statistics from the returned batch mean and
/// biased variance.
/// With `applyingReLU` the output is max(·, 0) of the normalised values, computed in the same pass
/// (one pass and one feature map fewer than `relu(batchNorm(...))`, the pre-activation pattern of
/// DenseNets and ResNets); the backward pass recomputes the ReLU's mask from the input, so only the
/// input is kept. With a `ceiling` as well, the ReLU is capped: `clamp` of the normalised values to
/// [0, ceiling] (ReLU6, MobileNetV2's activation, with 6), computed and differentiated the same way.
/// - `statistics`: `input`'s batch mean and biased variance when the caller already has
///   them, exactly as `batchNormStatistics` computes them (a channel's statistics do not depend on
///   the other channels, so those of a window of a `FeatureBuffer` serve every window that covers
///   it); they are the statistics the gradient differentiates through, so any other values give
///   wrong gradients. Computed here when nil.
/// - Returns: the normalised output and the batch mean and biased variance per channel.
public func batchNorm(
  _ input: Variable, weight: Variable?, bias: Variable?, epsilon: Double = 1e-5, applyingReLU: Bool = false,
  ceiling: Double? = nil, statistics: (mean: Tensor, variance: Tensor)? = nil
) -> (output: Variable, mean: Tensor, variance: Tensor) {
  let x = input.value, w = weight?.value
  let (mean, variance) = batchStatistics(x, given: statistics, "batchNorm")
  // The pullback recomputes the ReLU's mask from the input, so in a checkpoint replay the output is
  // computed only if read (optimisation A): for a convolution whose output the region's policy kept,
  // only when that convolution's weight gradient needs it.
  let beta = bias?.value
  let compute = {
    batchNormalized(
      x, mean: mean, variance: variance, weight: w, bias: beta, epsilon: epsilon, applyingReLU: applyingReLU, ceiling: ceiling)
  }
  let inputs = [input] + [weight, bias].compactMap { $0 }
  let hasWeight = weight != nil, hasBias = bias != nil, b = applyingReLU ? bias?.value : nil, sink = input.gradientSink
  let accumulated = AccumulatedGradient(input)
  let name = ceiling != nil ? "batchNormClampedReLU" : applyingReLU ? "batchNormReLU" : "batchNorm"
  let output = recordOperation(name, deferring: compute, shape: x.shape, dtype: x.dtype, inputs: inputs) { [x] grad in
    let others = { (g: (weight: Tensor, bias: Tensor)) in (hasWeight ? [g.weight] : []) + (hasBias ? [g.bias] : []) }
    if let destination = sink?.destination(like: x) ?? accumulated?.destination(like: x) {
      let g = batchNormBackward(
        grad, x, mean: mean, variance: variance, weight: w, bias: b, epsilon: epsilon, applyingReLU: applyingReLU, ceiling: ceiling,
        into: destination)
      checkSent(destination, name)
      return [nil] + others(g)
    }
    let g = batchNormBackward(
      grad, x, mean: mean, variance: variance, weight: w, bias: b, epsilon: epsilon, applyingReLU: applyingReLU, ceiling: ceiling)
    return [g.input] + others((g.weight, g.bias))
  }
  return (output, mean, variance)
}

/// Training-mode batch normalisation of `input` [N, C, H, W] followed by the sum with `residual`
/// (of `input`'s shape) and, with `applyingReLU`, a ReLU of the sum: `relu(bn(input) + residual)`,
/// the end of a post-activation residual block, in one pass forward and two back where the
/// composition `addReLU(batchNorm(...).output, residual)` takes two and four, with the same bits.
/// Keeps the input and, with the ReLU, the output, whose sign is the ReLU's mask (the block's output
/// is the next block's input, kept by its first convolution anyway).
///
/// `statistics` and the returned mean and variance are those of
/// ``batchNorm(_:weight:bias:epsilon:applyingReLU:ceiling:statistics:)``.
public func batchNorm(
  _ input: Variable, weight: Variable?, bias: Variable?, epsilon: Double = 1e-5, adding residual: Variable, applyingReLU: Bool = false,
  statistics: (mean: Tensor, variance: Tensor)? = nil
) -> (output: Variable, mean: Tensor, variance: Tensor) {
  let x = input.value, w = weight?.value, beta = bias?.value
  require(
    residual.shape == x.shape && residual.dtype == x.dtype,
    "batchNorm: residual \(residual.shape) (\(residual.dtype)) does not match input \(x.shape) (\(x.dtype))")
  let (mean, variance) = batchStatistics(x, given: statistics, "batchNorm")
  let y = batchNormalized(
    x, mean: mean, variance: variance, weight: w, bias: beta, epsilon: epsilon, adding: residual.value, applyingReLU: applyingReLU)
  let inputs = [input, residual] + [weight, bias].compactMap { $0 }
  let hasWeight = weight != nil, hasBias = bias != nil, sink = input.gradientSink, accumulated = AccumulatedGradient(input)
  let name = applyingReLU ? "batchNormAddReLU" : "batchNormAdd"
  let output = recordOperation(name, y, inputs: inputs) { [x, y = applyingReLU ? y : nil] grad in
    let others = { (g: (weight: Tensor, bias: Tensor)) in (hasWeight ? [g.weight] : []) + (hasBias ? [g.bias] : []) }
    let destination = sink?.destination(like: x) ?? accumulated?.destination(like: x)
    defer { if let destination { checkSent(destination, name) } }
    guard let y else {  // the sum passes its gradient to both terms unchanged
      if let destination {
        return [nil, grad] + others(batchNormBackward(grad, x, mean: mean, variance: variance, weight: w, epsilon: epsilon, into: destination))
      }
      let g = batchNormBackward(grad, x, mean: mean, variance: variance, weight: w, epsilon: epsilon)
      return [g.input, grad] + others((g.weight, g.bias))
    }
    let g = batchNormAddReLUBackward(grad, x, output: y, mean: mean, variance: variance, weight: w, epsilon: epsilon, into: destination)
    return [g.input, g.residual] + others((g.weight, g.bias))
  }
  return (output, mean, variance)
}

/// Stops the program, under anomaly detection, if a gradient a kernel put into a channel view's
/// pieces (``recordChannelView(_:name:channels:pieces:)``) holds a NaN or an infinity: the check
/// the tape makes of returned gradients.
func checkSent(_ destination: GradientDestination, _ name: String) {
  guard Context.current.detectsAnomalies else { return }
  for part in destination.parts { checkFinite(part.tensor, name, "backward") }
}

/// The per-channel batch mean and biased variance of `x` for a training-mode normalisation: the
/// caller's when `given` (checked against `x`), otherwise computed.
func batchStatistics(
  _ x: Tensor, given: (mean: Tensor, variance: Tensor)?, _ operation: String
) -> (mean: Tensor, variance: Tensor) {
  guard let given else { return batchNormStatistics(x) }
  let channels = x.rank == 4 ? x.shape[1] : -1
  require(
    given.mean.shape == [channels] && given.variance.shape == [channels] && given.mean.dtype == x.dtype
      && given.variance.dtype == x.dtype,
    "\(operation): statistics \(given.mean.shape) and \(given.variance.shape) (\(given.mean.dtype)) do not fit input \(x.shape) (\(x.dtype))")
  return given
}
