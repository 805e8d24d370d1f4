/// Batch normalisation followed by a residual sum, and by a ReLU of the sum: the end of a
/// post-activation residual block, `relu(bn(conv(...)) + shortcut)`.
///
/// Composed, the normalisation writes its output, the sum reads it back with the residual and
/// writes the block's output, and the backward pass masks the gradient in a pass of its own before
/// the normalisation's two. Fused, the forward pass is one pass over the input and the residual, and
/// the mask is applied by the normalisation's first backward pass, which stores the masked gradient
/// (the residual's gradient) as it sums it. The results are those of the composition, bit for bit.

/// `(x - mean) / sqrt(variance + epsilon) * weight + bias + residual` per channel, the normalised
/// value computed as ``batchNormalized(_:mean:variance:weight:bias:epsilon:applyingReLU:ceiling:)``
/// computes it and then added to `residual` (of `input`'s shape); followed by max(·, 0) in the same
/// pass when `applyingReLU`, as ``addReLU(_:_:)`` takes it (0 for a NaN sum). In `input`'s plane
/// layout.
public func batchNormalized(
  _ input: Tensor, mean: Tensor, variance: Tensor, weight: Tensor?, bias: Tensor?, epsilon: Double, adding residual: Tensor,
  applyingReLU: Bool = false
) -> Tensor {
  checkChannels("batchNormalized", input, [("mean", mean), ("variance", variance), ("weight", weight), ("bias", bias)])
  checkMatches("batchNormalized", input, [("residual", residual)])
  let x = input.denseWithPlanes(), r = residual.laidOut(like: x.strides)
  let y = Tensor(uninitializedShape: x.shape, dtype: x.dtype, strides: x.strides)
  func kernel<T: TensorScalar>(_: T.Type) {
    let rOffset = r.base(T.self) - y.base(T.self)
    forEachNormalizedRow(of: x, into: y, mean: mean, variance: variance, weight: weight, bias: bias, epsilon: epsilon) {
      (out: UnsafeMutablePointer<T>, src, n, scale, shift) in
      let res = out + rOffset
      if applyingReLU {
        for i in 0..<n {
          let sum = (src[i] * scale + shift) + res[i]
          out[i] = sum > 0 ? sum : 0
        }
      } else {
        for i in 0..<n { out[i] = (src[i] * scale + shift) + res[i] }
      }
    }
  }
  x.dtype.dispatch(kernel, kernel)
  return y
}

/// The gradients of `batchNormalized(input, ..., adding: residual, applyingReLU: true)` with batch
/// statistics, from its `output`: the gradient passes where `output` is positive (as
/// ``reluBackward(_:output:)``'s), and that masked gradient is the residual's; the input, weight
/// and bias gradients are the normalisation's (see
/// ``batchNormBackward(_:_:mean:variance:weight:bias:epsilon:applyingReLU:ceiling:)``) of it.
///
/// With a `destination`, the input gradient is written or added there instead (see
/// ``GradientDestination``) and `input` is nil in the result.
public func batchNormAddReLUBackward(
  _ gradOutput: Tensor, _ input: Tensor, output: Tensor, mean: Tensor, variance: Tensor, weight: Tensor?, epsilon: Double,
  into destination: GradientDestination? = nil
) -> (input: Tensor?, weight: Tensor, bias: Tensor, residual: Tensor) {
  checkMatches("batchNormAddReLUBackward", input, [("output", output)])
  let x = input.denseWithPlanes()
  let masked = Tensor(uninitializedShape: x.shape, dtype: x.dtype, strides: x.strides)
  let g = batchNormBackward(
    gradOutput, x, mean, variance, weight, nil, epsilon, false, nil, destination,
    residual: (output.laidOut(like: x.strides), masked))
  return (g.input, g.weight, g.bias, masked)
}
