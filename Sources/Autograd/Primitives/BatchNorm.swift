import TensorModule

/// Training-mode batch normalisation of `input` [N, C, H, W] with the batch's own statistics.
///
/// A fused primitive rather than a composite: as a composition of means, subtractions and
/// products it makes about ten passes over the feature map and keeps several of them for the
/// backward pass; fused it makes three and keeps only the input. `Tests/AutogradTests` checks it
/// against the composite. The caller updates running statistics from the returned batch mean and
/// biased variance.
/// - Returns: the normalised output and the batch mean and biased variance per channel.
public func batchNorm(
  _ input: Variable, weight: Variable?, bias: Variable?, epsilon: Double = 1e-5
) -> (output: Variable, mean: Tensor, variance: Tensor) {
  let x = input.value, w = weight?.value
  let (mean, variance) = batchNormStatistics(x)
  let y = batchNormalized(x, mean: mean, variance: variance, weight: w, bias: bias?.value, epsilon: epsilon)
  let inputs = [input] + [weight, bias].compactMap { $0 }
  let hasWeight = weight != nil, hasBias = bias != nil
  let output = recordOperation("batchNorm", y, inputs: inputs) { [x] grad in
    let g = batchNormBackward(grad, x, mean: mean, variance: variance, weight: w, epsilon: epsilon)
    return [g.input] + (hasWeight ? [g.weight] : []) + (hasBias ? [g.bias] : [])
  }
  return (output, mean, variance)
}
