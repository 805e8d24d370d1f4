/// 2-D convolution (cross-correlation, as in PyTorch) and its two gradient kernels.
///
/// Each group and chunk of images is one GEMM between the weight matrix and an im2col matrix whose
/// columns run over every output pixel of the chunk, so results come out channel-major: the output
/// has shape [N, C, H, W] and memory order [C, N, H, W]. A 1x1 convolution with stride 1 and no
/// padding on a channel-major input needs no im2col at all: the input already is the matrix.

/// The convolution of `input` [N, C, H, W] with `weight` [O, C / groups, KH, KW]; no bias.
///
/// - Returns: [N, O, OH, OW] with OH = (H + 2 * padding - dilation * (KH - 1) - 1) / stride + 1,
///   stored channel-major.
/// - Precondition: the channels fit the weight and the groups; messages name every shape.
public func conv2d(
  _ input: Tensor, _ weight: Tensor, stride: IntOrPair = 1, padding: IntOrPair = 0,
  dilation: IntOrPair = 1, groups: Int = 1
) -> Tensor {
  let g = ConvolutionGeometry(
    "conv2d", input: input.shape, weight: weight.shape, stride: stride, padding: padding, dilation: dilation, groups: groups)
  let out = Tensor(uninitializedShape: g.outputShape, dtype: input.dtype, strides: PlaneLayout.channelMajorStrides(g.outputShape))
  convolve(input, weight, g, into: out)
  return out
}

/// The shape of `conv2d(input, weight, ...)` for operands of these shapes, without computing it.
///
/// - Precondition: the shapes fit as ``conv2d(_:_:stride:padding:dilation:groups:)`` requires.
public func conv2dOutputShape(
  input: [Int], weight: [Int], stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1, groups: Int = 1
) -> [Int] {
  ConvolutionGeometry("conv2d", input: input, weight: weight, stride: stride, padding: padding, dilation: dilation, groups: groups)
    .outputShape
}

/// Several convolutions of one input, their outputs one after another along channels, each written
/// straight into its channels of one channel-major result (no per-convolution copy).
///
/// - `weights`: one weight [O_i, C / groups, KH_i, KW_i] per convolution.
/// - `paddings`: one padding per convolution (so that the output sizes agree).
/// - Returns: [N, ΣO_i, OH, OW], stored channel-major.
public func concatenatedConv2d(
  _ input: Tensor, _ weights: [Tensor], stride: IntOrPair = 1, paddings: [IntOrPair], groups: Int = 1
) -> Tensor {
  require(
    !weights.isEmpty && weights.count == paddings.count,
    "concatenatedConv2d: \(weights.count) weights and \(paddings.count) paddings (input \(input.shape))")
  let geometries = zip(weights, paddings).map { w, p in
    ConvolutionGeometry("concatenatedConv2d", input: input.shape, weight: w.shape, stride: stride, padding: p, dilation: 1, groups: groups)
  }
  let first = geometries[0].outputShape
  require(
    geometries.allSatisfy { $0.outputShape[2...] == first[2...] },
    "concatenatedConv2d: outputs \(geometries.map(\.outputShape)) differ in size (weights \(weights.map(\.shape)), paddings \(paddings))")
  let shape = [first[0], geometries.reduce(0) { $0 + $1.outputChannels }, first[2], first[3]]
  let out = Tensor(uninitializedShape: shape, dtype: input.dtype, strides: PlaneLayout.channelMajorStrides(shape))
  var start = 0
  for (w, g) in zip(weights, geometries) {
    convolve(input, w, g, into: slice(out, start..<start + g.outputChannels, alongAxis: 1))
    start += g.outputChannels
  }
  return out
}

/// Runs the forward kernel into `out`, a channel-major tensor or a channel range of one.
func convolve(_ input: Tensor, _ weight: Tensor, _ g: ConvolutionGeometry, into out: Tensor) {
  require(input.dtype == weight.dtype, "conv2d: dtypes differ (input \(input.dtype), weight \(weight.dtype))")
  let x = input.withDensePlanes(), w = weight.contiguous()
  func kernel<T: TensorScalar>(_: T.Type) { ConvolutionPlan(g).forward(x, w, into: out, T.self) }
  x.dtype.dispatch(kernel, kernel)
}

/// The gradient of ``conv2d(_:_:stride:padding:dilation:groups:)`` with respect to its input.
///
/// - `inputShape`: the shape of the convolution's input [N, C, H, W].
/// - Returns: a tensor of `inputShape`, stored channel-major.
public func conv2dBackwardInput(
  _ gradOutput: Tensor, _ weight: Tensor, inputShape: [Int], stride: IntOrPair = 1, padding: IntOrPair = 0,
  dilation: IntOrPair = 1, groups: Int = 1
) -> Tensor {
  let g = ConvolutionGeometry(
    "conv2dBackwardInput", input: inputShape, weight: weight.shape, stride: stride, padding: padding,
    dilation: dilation, groups: groups)
  require(
    gradOutput.shape == g.outputShape,
    "conv2dBackwardInput: gradient \(gradOutput.shape) does not match output \(g.outputShape) (weight \(weight.shape))")
  let dy = gradOutput.channelMajor(), w = weight.contiguous()
  let dx = Tensor(uninitializedShape: inputShape, dtype: dy.dtype, strides: PlaneLayout.channelMajorStrides(inputShape))
  func kernel<T: TensorScalar>(_: T.Type) { ConvolutionPlan(g).backwardInput(dy, w, into: dx, T.self) }
  dy.dtype.dispatch(kernel, kernel)
  return dx
}

/// The gradient of ``conv2d(_:_:stride:padding:dilation:groups:)`` with respect to its weight.
///
/// - `weightShape`: the shape of the weight [O, C / groups, KH, KW].
public func conv2dBackwardWeight(
  _ gradOutput: Tensor, _ input: Tensor, weightShape: [Int], stride: IntOrPair = 1, padding: IntOrPair = 0,
  dilation: IntOrPair = 1, groups: Int = 1
) -> Tensor {
  let g = ConvolutionGeometry(
    "conv2dBackwardWeight", input: input.shape, weight: weightShape, stride: stride, padding: padding,
    dilation: dilation, groups: groups)
  require(
    gradOutput.shape == g.outputShape,
    "conv2dBackwardWeight: gradient \(gradOutput.shape) does not match output \(g.outputShape) (input \(input.shape))")
  let dy = gradOutput.channelMajor(), x = input.withDensePlanes()
  let dw = Tensor(uninitializedShape: weightShape, dtype: dy.dtype)
  func kernel<T: TensorScalar>(_: T.Type) { ConvolutionPlan(g).backwardWeight(dy, x, into: dw, T.self) }
  dy.dtype.dispatch(kernel, kernel)
  return dw
}

/// Both gradients of ``conv2d(_:_:stride:padding:dilation:groups:)``, with respect to its input and
/// its weight, equal to ``conv2dBackwardInput(_:_:inputShape:stride:padding:dilation:groups:)`` and
/// ``conv2dBackwardWeight(_:_:weightShape:stride:padding:dilation:groups:)`` but sharing the work
/// they have in common (for a stride-1 convolution with few outputs, the output gradient shifted
/// once per kernel tap).
///
/// - Returns: the input gradient, stored channel-major, and the weight gradient.
public func conv2dBackward(
  _ gradOutput: Tensor, input: Tensor, weight: Tensor, stride: IntOrPair = 1, padding: IntOrPair = 0,
  dilation: IntOrPair = 1, groups: Int = 1
) -> (input: Tensor, weight: Tensor) {
  let g = ConvolutionGeometry(
    "conv2dBackward", input: input.shape, weight: weight.shape, stride: stride, padding: padding, dilation: dilation, groups: groups)
  return convolutionGradients(gradOutput, input: input, weight: weight, ConvolutionPlan(g), g, "conv2dBackward")
}

/// ``conv2dBackward(_:input:weight:stride:padding:dilation:groups:)`` with the input gradient
/// written or added into `destination` (see ``GradientDestination``) instead of a new tensor;
/// returns the weight gradient. On Winograd's path and the depthwise plane kernels' (Float32 on
/// AVX2) each plane is written or added where it goes, with no input gradient of its own; elsewhere
/// the input gradient is computed, then written or added. The bits are those of the gradient added
/// as a tensor.
public func conv2dBackward(
  _ gradOutput: Tensor, input: Tensor, weight: Tensor, stride: IntOrPair = 1, padding: IntOrPair = 0,
  dilation: IntOrPair = 1, groups: Int = 1, into destination: GradientDestination
) -> Tensor {
  let g = ConvolutionGeometry(
    "conv2dBackward", input: input.shape, weight: weight.shape, stride: stride, padding: padding, dilation: dilation, groups: groups)
  destination.check(channels: input)
  // Every path's check (the fallback's own is the same), made once before choosing.
  require(
    gradOutput.shape == g.outputShape,
    "conv2dBackward: gradient \(gradOutput.shape) does not match output \(g.outputShape) (input \(input.shape), weight \(weight.shape))")
  let method = ConvolutionPlan(g).method
  // The kernels that deliver plane by plane take Float32 operands and destinations with dense planes.
  let deliverable = [gradOutput, input, weight].allSatisfy({ $0.dtype == .float32 })
    && destination.parts.allSatisfy({ PlaneLayout.hasDensePlanes($0.tensor) })
  if case .depthwise(let depthwise) = method, deliverable, depthwise.deliversInputGradientPlanes {
    let dy = gradOutput.channelMajor(), w = weight.contiguous(), dw = Tensor(uninitializedShape: weight.shape, dtype: .float32)
    depthwise.backwardInputByPlanes(dy, w, into: InputGradientTarget(destination))
    depthwise.backwardWeight(dy, input.withDensePlanes(), into: dw, Float.self)
    withExtendedLifetime(destination) {}
    return dw
  }
  guard case .winograd(let winograd) = method, WinogradConvolution.handles(Float.self), deliverable else {
    let both = conv2dBackward(
      gradOutput, input: input, weight: weight, stride: stride, padding: padding, dilation: dilation, groups: groups)
    add(both.input, into: destination)
    return both.weight
  }
  let dw = winogradGradients(winograd, gradOutput, input, weight, scalingPlanes: nil, into: InputGradientTarget(destination))
  withExtendedLifetime(destination) {}
  return dw
}

/// Both gradients of a Float32 convolution on Winograd's path, with plane factors or without
/// (``WinogradConvolution/backward(_:_:_:scalingPlanes:inputGradient:weightGradient:)``): the input
/// gradient delivered to `target`, the weight gradient returned.
func winogradGradients(
  _ winograd: WinogradConvolution, _ gradOutput: Tensor, _ input: Tensor, _ weight: Tensor, scalingPlanes: UnsafePointer<Float>?,
  into target: InputGradientTarget
) -> Tensor {
  let dy = gradOutput.channelMajor(), x = input.withDensePlanes(), w = weight.contiguous()
  let dw = Tensor(uninitializedShape: weight.shape, dtype: .float32)
  winograd.backward(dy, x, w, scalingPlanes: scalingPlanes, inputGradient: target, weightGradient: dw)
  return dw
}

/// Both gradients computed together, when the convolution's plan shares work between them (see
/// ``ConvolutionPlan/sharesGradientWork``) or, with `normalizing`, when it normalises its input on
/// the way in (``ConvolutionPlan/gradientsNormalizeInput``); nil otherwise.
/// With `normalizing`, `input` is the pre-activation unit's input, normalised on its way into the
/// padded grid or the pointwise chunks, and the input gradient is the normalised map's.
func sharedGradientBackward(
  _ gradOutput: Tensor, input: Tensor, weight: Tensor, _ g: ConvolutionGeometry, _ operation: String,
  normalizing preActivation: PreActivation? = nil
) -> (input: Tensor, weight: Tensor)? {
  let plan = ConvolutionPlan(g)
  guard plan.sharesGradientWork || (preActivation != nil && plan.gradientsNormalizeInput) else { return nil }
  return convolutionGradients(gradOutput, input: input, weight: weight, plan, g, operation, normalizing: preActivation)
}

/// Both gradients of the convolution `g` by `plan` (``ConvolutionPlan/gradients(_:_:_:inputGradient:weightGradient:_:normalizing:)``),
/// after checking the output gradient's shape and the dtypes: the input gradient, stored
/// channel-major, and the weight gradient.
private func convolutionGradients(
  _ gradOutput: Tensor, input: Tensor, weight: Tensor, _ plan: ConvolutionPlan, _ g: ConvolutionGeometry, _ operation: String,
  normalizing preActivation: PreActivation? = nil
) -> (input: Tensor, weight: Tensor) {
  require(
    gradOutput.shape == g.outputShape,
    "\(operation): gradient \(gradOutput.shape) does not match output \(g.outputShape) (input \(input.shape), weight \(weight.shape))")
  require(
    input.dtype == weight.dtype && gradOutput.dtype == input.dtype,
    "\(operation): dtypes differ (gradient \(gradOutput.dtype), input \(input.dtype), weight \(weight.dtype))")
  let dy = gradOutput.channelMajor(), x = input.withDensePlanes(), w = weight.contiguous()
  let dx = Tensor(uninitializedShape: input.shape, dtype: dy.dtype, strides: PlaneLayout.channelMajorStrides(input.shape))
  let dw = Tensor(uninitializedShape: weight.shape, dtype: dy.dtype)
  func kernel<T: TensorScalar>(_: T.Type) {
    plan.gradients(dy, x, w, inputGradient: dx, weightGradient: dw, T.self, normalizing: preActivation?.affine(T.self))
  }
  dy.dtype.dispatch(kernel, kernel)
  return (dx, dw)
}
