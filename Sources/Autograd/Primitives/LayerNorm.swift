import TensorModule

/// Layer normalisation (Ba et al. 2016) of `x` over its trailing dimensions `normalizedShape`,
/// scaled by `weight` and shifted by `bias` (each of that shape, or nil), as PyTorch's
/// `layer_norm`: (x - mean) / √(variance + epsilon) · weight + bias, with the biased variance.
///
/// A fused primitive rather than a composite: composed it made about ten passes and kept several
/// feature maps for the backward pass; fused it keeps the input and two numbers per row.
/// `Tests/AutogradTests` checks it against the composite.
public func layerNorm(
  _ x: Variable, normalizedShape: [Int], weight: Variable? = nil, bias: Variable? = nil, epsilon: Double = 1e-5
) -> Variable {
  let k = normalizedShape.count
  require(
    k >= 1 && k <= x.shape.count && Array(x.shape.suffix(k)) == normalizedShape,
    "layerNorm: input \(x.shape) does not end in the normalised shape \(normalizedShape)")
  for (name, p) in [("weight", weight), ("bias", bias)] {
    if let p { require(p.shape == normalizedShape, "layerNorm: \(name) \(p.shape) is not \(normalizedShape)") }
  }
  let value = x.value, w = weight?.value, n = normalizedShape.reduce(1, *)
  let (y, mean, inverse) = TensorModule.layerNorm(value, normalizedCount: n, weight: w, bias: bias?.value, epsilon: epsilon)
  let hasWeight = weight != nil, hasBias = bias != nil
  return recordOperation("layerNorm", y, inputs: [x] + [weight, bias].compactMap { $0 }) { [value] grad in
    let g = layerNormGradient(grad, input: value, mean: mean, inverseDeviation: inverse, weight: w, affine: hasWeight || hasBias)
    return [g.input] + (hasWeight ? [g.weight] : []) + (hasBias ? [g.bias] : [])
  }
}
