import TensorModule

/// Training-mode batch normalisation of `input` [N, C, H, W], scaled by an excitation of its own
/// plane means, plus `residual`, then a ReLU: `relu(y · excitation(mean(y, alongAxes: [2, 3])) +
/// residual)` with `y` the normalised input. This is the end of a squeeze-and-excitation residual
/// block (Hu et al. 2018): `excitation` maps the pooled means [N, C] to one factor per image and
/// channel, [N, C, 1, 1].
///
/// A composite with a pullback of its own, for speed: it never writes `y`. In the forward pass the
/// composition writes `y`, reads it for the means and reads it again for the output. Here `input`
/// is read twice, and `y` is recomputed in registers each time. In the backward pass the
/// composition writes `y`'s gradient, adds the pooled means' gradient into it and reads it back for
/// the normalisation's gradients. Here the residual's gradient (the ReLU's masked gradient) is
/// written once; the normalisation's backward pass takes it with the scale and the means' gradient
/// and computes `y`'s gradient as it reads. Every result has the bits of the composition
/// (`Tests/AutogradTests` checks both passes against it).
///
/// `excitation`'s operations are recorded as they are, between the two halves of this one: the
/// half recorded first computes the means and, in the backward pass, the normalisation's gradients;
/// the half recorded after `excitation` computes the output and, in the backward pass, the masked
/// gradient and the scale's gradient, which `excitation`'s pullbacks need first. The second half
/// hands the masked gradient to the first, which the tape runs after it. Keeps `input`, `residual`,
/// the scale and the batch statistics, not `y`.
///
/// Where the layouts do not allow the one-pass kernels (`batchNormExcitationFuses(_:scale:residual:)`),
/// this is the composition itself. `statistics` and the returned mean and variance are those of
/// ``batchNorm(_:weight:bias:epsilon:applyingReLU:ceiling:statistics:)``.
public func batchNorm(
  _ input: Variable, weight: Variable?, bias: Variable?, epsilon: Double = 1e-5, excitation: (Variable) -> Variable,
  adding residual: Variable, statistics: (mean: Tensor, variance: Tensor)? = nil
) -> (output: Variable, mean: Tensor, variance: Tensor) {
  let x = input.value, w = weight?.value, beta = bias?.value, r = residual.value
  require(
    x.rank == 4 && r.shape == x.shape && r.dtype == x.dtype,
    "batchNorm: residual \(r.shape) (\(r.dtype)) does not match input \(x.shape) (\(x.dtype)) in [N, C, H, W]")
  let (mu, sigma2) = batchStatistics(x, given: statistics, "batchNorm")
  let scaleShape = [x.shape[0], x.shape[1], 1, 1]
  guard batchNormExcitationFuses(x, scale: Tensor(zeros: scaleShape, dtype: x.dtype), residual: r) else {
    let y = batchNorm(input, weight: weight, bias: bias, epsilon: epsilon, statistics: (mu, sigma2)).output
    return (addReLU(y, scaledBy: excitation(mean(y, alongAxes: [2, 3])), residual), mu, sigma2)
  }
  // The means as `mean(_:alongAxes:)` computes them: the sums times the count's reciprocal.
  let factor = Tensor(Double(x.shape[0] * x.shape[1]) / Double(max(1, x.count)), dtype: x.dtype)
  let sums = batchNormPlaneSums(x, mean: mu, variance: sigma2, weight: w, bias: beta, epsilon: epsilon)
  let handoff = MaskedGradient()
  let inputs = [input] + [weight, bias].compactMap { $0 }
  let hasWeight = weight != nil, hasBias = bias != nil, sink = input.gradientSink, accumulated = AccumulatedGradient(input)
  let name = "batchNormExcitation"
  // The second output links the two halves on the tape: the second half sends it a gradient, so
  // that the first half's pullback runs even where the means received none.
  let first = recordOperation(name, [sums * factor, Tensor(zeros: [1], dtype: x.dtype)], inputs: inputs) { gradients in
    let masked = handoff.masked ?? Tensor(zeros: x.shape, dtype: x.dtype)
    let scale = handoff.scale ?? Tensor(zeros: scaleShape, dtype: x.dtype)
    handoff.masked = nil
    // The means' gradient as `mean`'s pullbacks pass it on: times the reciprocal, one value a plane.
    let shift = gradients[0].map { $0 * factor } ?? Tensor(zeros: [x.shape[0], x.shape[1]], dtype: x.dtype)
    let others = { (g: (weight: Tensor, bias: Tensor)) in (hasWeight ? [g.weight] : []) + (hasBias ? [g.bias] : []) }
    if let destination = sink?.destination(like: x) ?? accumulated?.destination(like: x) {
      let g = batchNormBackward(
        masked, x, mean: mu, variance: sigma2, weight: w, epsilon: epsilon, scaledBy: scale, shiftedBy: shift, into: destination)
      checkSent(destination, name)
      return [nil] + others(g)
    }
    let g = batchNormBackward(masked, x, mean: mu, variance: sigma2, weight: w, epsilon: epsilon, scaledBy: scale, shiftedBy: shift)
    return [g.input] + others((g.weight, g.bias))
  }
  let scale = excitation(first[0])
  require(scale.shape == scaleShape, "batchNorm: the excitation gave \(scale.shape), expected \(scaleShape)")
  let s = scale.value
  let y = batchNormAddReLU(x, mean: mu, variance: sigma2, weight: w, bias: beta, epsilon: epsilon, scaledBy: s, adding: r)
  let output = recordOperation("\(name)Output", y, inputs: [first[1], scale, residual]) { grad in
    let g = batchNormAddReLUBackward(grad, x, mean: mu, variance: sigma2, weight: w, bias: beta, epsilon: epsilon, scaledBy: s, adding: r)
    (handoff.masked, handoff.scale) = (g.residual, s)
    return [Tensor(zeros: [1], dtype: x.dtype), g.scale, g.residual]
  }
  return (output, mu, sigma2)
}

/// What the second half of ``batchNorm(_:weight:bias:epsilon:excitation:adding:statistics:)``'s
/// pullback hands to the first: the masked gradient and the scale it goes with.
private final class MaskedGradient {
  var masked: Tensor?
  var scale: Tensor?
}
