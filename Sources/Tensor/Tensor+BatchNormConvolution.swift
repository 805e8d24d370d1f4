/// The kernels of the pre-activation unit: batch normalisation with given batch statistics, ReLU,
/// and a convolution, forward and backward.
///
/// Each is equal, bit for bit, to composing ``batchNormalized(_:mean:variance:weight:bias:epsilon:applyingReLU:ceiling:)``
/// with ``conv2d(_:_:stride:padding:dilation:groups:)`` (forward) or with ``conv2dBackward(_:input:weight:stride:padding:dilation:groups:)``
/// and ``batchNormBackward(_:_:mean:variance:weight:bias:epsilon:applyingReLU:ceiling:)`` (backward). Where
/// the convolution copies its input anyway (into the padded grid of the shifted-grid path, or the
/// scratch planes Winograd's input transform reads; see ``ConvolutionPlan/normalizesInput``), the
/// normalised values are written straight into that copy: one pass over the feature map and one
/// feature map fewer, in each direction.

/// `conv2d(batchNormalized(input, ..., applyingReLU: true), convWeight, ...)`.
///
/// - `mean`, `variance`: the per-channel batch mean and biased variance of `input`.
/// - `normWeight`, `normBias`: the normalisation's scale and shift per channel (1 and 0 when absent).
/// - Returns: [N, O, OH, OW], stored channel-major.
public func batchNormReLUConv2d(
  _ input: Tensor, mean: Tensor, variance: Tensor, normWeight: Tensor?, normBias: Tensor?, epsilon: Double,
  convWeight: Tensor, stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1, groups: Int = 1
) -> Tensor {
  let g = ConvolutionGeometry(
    "batchNormReLUConv2d", input: input.shape, weight: convWeight.shape, stride: stride, padding: padding,
    dilation: dilation, groups: groups)
  let preActivation = PreActivation(mean: mean, variance: variance, weight: normWeight, bias: normBias, epsilon: epsilon)
  let plan = ConvolutionPlan(g)
  guard input.dtype == convWeight.dtype, plan.normalizesInput else {
    return conv2d(preActivation.applied(to: input), convWeight, stride: stride, padding: padding, dilation: dilation, groups: groups)
  }
  checkChannels("batchNormReLUConv2d", input, [("mean", mean), ("variance", variance), ("weight", normWeight), ("bias", normBias)])
  let x = input.withDensePlanes(), w = convWeight.contiguous()
  let out = Tensor(uninitializedShape: g.outputShape, dtype: x.dtype, strides: PlaneLayout.channelMajorStrides(g.outputShape))
  func kernel<T: TensorScalar>(_: T.Type) {
    plan.forward(x, w, into: out, T.self, normalizing: preActivation.affine(T.self))
  }
  x.dtype.dispatch(kernel, kernel)
  return out
}

/// The gradients of ``batchNormReLUConv2d(_:mean:variance:normWeight:normBias:epsilon:convWeight:stride:padding:dilation:groups:)``
/// as a training-mode unit (the statistics depend on the input) with respect to the input, the
/// normalisation's weight and bias, and the convolution's weight.
public func batchNormReLUConv2dBackward(
  _ gradOutput: Tensor, input: Tensor, mean: Tensor, variance: Tensor, normWeight: Tensor?, normBias: Tensor?,
  epsilon: Double, convWeight: Tensor, stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1,
  groups: Int = 1
) -> (input: Tensor, normWeight: Tensor, normBias: Tensor, convWeight: Tensor) {
  let (da, dw) = unitConvolutionBackward(gradOutput, input, mean, variance, normWeight, normBias, epsilon, convWeight, stride, padding, dilation, groups)
  let n = batchNormBackward(
    da, input, mean: mean, variance: variance, weight: normWeight, bias: normBias, epsilon: epsilon, applyingReLU: true)
  return (n.input, n.weight, n.bias, dw)
}

/// ``batchNormReLUConv2dBackward(_:input:mean:variance:normWeight:normBias:epsilon:convWeight:stride:padding:dilation:groups:)``
/// with the input gradient written or added into `destination` instead of a new tensor (see
/// ``GradientDestination``); returns the other gradients.
public func batchNormReLUConv2dBackward(
  _ gradOutput: Tensor, input: Tensor, mean: Tensor, variance: Tensor, normWeight: Tensor?, normBias: Tensor?,
  epsilon: Double, convWeight: Tensor, stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1,
  groups: Int = 1, into destination: GradientDestination
) -> (normWeight: Tensor, normBias: Tensor, convWeight: Tensor) {
  let (da, dw) = unitConvolutionBackward(gradOutput, input, mean, variance, normWeight, normBias, epsilon, convWeight, stride, padding, dilation, groups)
  let n = batchNormBackward(
    da, input, mean: mean, variance: variance, weight: normWeight, bias: normBias, epsilon: epsilon, applyingReLU: true,
    into: destination)
  return (n.weight, n.bias, dw)
}

/// The convolution's part of a unit's backward pass: the gradients of its input (the normalised
/// map) and of its weight.
private func unitConvolutionBackward(
  _ gradOutput: Tensor, _ input: Tensor, _ mean: Tensor, _ variance: Tensor, _ normWeight: Tensor?, _ normBias: Tensor?,
  _ epsilon: Double, _ convWeight: Tensor, _ stride: IntOrPair, _ padding: IntOrPair, _ dilation: IntOrPair, _ groups: Int
) -> (input: Tensor, weight: Tensor) {
  let g = ConvolutionGeometry(
    "batchNormReLUConv2dBackward", input: input.shape, weight: convWeight.shape, stride: stride, padding: padding,
    dilation: dilation, groups: groups)
  let preActivation = PreActivation(mean: mean, variance: variance, weight: normWeight, bias: normBias, epsilon: epsilon)
  checkChannels("batchNormReLUConv2dBackward", input, [("mean", mean), ("variance", variance), ("weight", normWeight), ("bias", normBias)])
  return sharedGradientBackward(gradOutput, input: input, weight: convWeight, g, "batchNormReLUConv2dBackward", normalizing: preActivation)
    ?? conv2dBackward(
      gradOutput, input: preActivation.applied(to: input), weight: convWeight, stride: stride, padding: padding,
      dilation: dilation, groups: groups)
}

/// A training-mode batch normalisation with given statistics followed by ReLU: what a pre-activation
/// unit applies to its input before the convolution.
struct PreActivation {
  let mean: Tensor, variance: Tensor, weight: Tensor?, bias: Tensor?
  let epsilon: Double

  /// The normalised map as a tensor of its own.
  func applied(to x: Tensor) -> Tensor {
    batchNormalized(x, mean: mean, variance: variance, weight: weight, bias: bias, epsilon: epsilon, applyingReLU: true)
  }

  /// Every channel's `scale` and `shift`, as ``batchNormalized(_:mean:variance:weight:bias:epsilon:applyingReLU:ceiling:)`` computes them.
  func affine<T: TensorScalar>(_: T.Type) -> (scale: [T], shift: [T]) {
    let m = mean.scalars(as: T.self), v = variance.scalars(as: T.self)
    let w = weight?.scalars(as: T.self), b = bias?.scalars(as: T.self)
    var scale: [T] = [], shift: [T] = []
    for c in m.indices {
      let (s, t) = affineCoefficients(mean: m[c], variance: v[c], weight: w?[c], bias: b?[c], epsilon: epsilon)
      scale.append(s)
      shift.append(t)
    }
    return (scale, shift)
  }
}
