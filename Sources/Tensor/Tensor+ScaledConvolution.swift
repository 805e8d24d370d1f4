/// The convolution of an input scaled by one factor per plane: a channel dropout (a mask of 0 and
/// 1 / keep per image and channel) followed by a convolution, as the windows of a sequentially
/// aggregated layer are dropped before each filter reads them.
///
/// Each function is equal, bit for bit, to the composition of the product with
/// ``conv2d(_:_:stride:padding:dilation:groups:)`` or ``conv2dBackward(_:input:weight:stride:padding:dilation:groups:)``.
/// Where the convolution transforms its input anyway (Winograd, Float32 on AVX2), the factors are
/// applied there and to its input gradient a chunk at a time: no scaled map is written, and none
/// needs to be kept for the gradients.

/// `conv2d(input * planeScale, weight, ...)`.
///
/// - `planeScale`: one factor per plane of `input`, [N, C, 1, 1] or a shape that broadcasts to it.
public func conv2d(
  _ input: Tensor, _ weight: Tensor, scalingPlanes planeScale: Tensor, stride: IntOrPair = 1, padding: IntOrPair = 0,
  dilation: IntOrPair = 1, groups: Int = 1
) -> Tensor {
  let g = ConvolutionGeometry(
    "conv2d", input: input.shape, weight: weight.shape, stride: stride, padding: padding, dilation: dilation, groups: groups)
  guard let (winograd, factors) = scaledWinograd(g, input, weight, planeScale, "conv2d") else {
    return conv2d(input * planeScale, weight, stride: stride, padding: padding, dilation: dilation, groups: groups)
  }
  let x = input.withDensePlanes(), w = weight.contiguous()
  let y = Tensor(uninitializedShape: g.outputShape, dtype: .float32, strides: PlaneLayout.channelMajorStrides(g.outputShape))
  factors.withUnsafeBufferPointer { winograd.forward(x, w, into: y, Float.self, scalingPlanes: $0.baseAddress!) }
  return y
}

/// The gradients of ``conv2d(_:_:scalingPlanes:stride:padding:dilation:groups:)`` with respect to
/// its input (`planeScale` times the gradient of the scaled input) and its weight. With
/// `destination`, the input gradient is written or added there (see ``GradientDestination``) and
/// the result's `input` is nil.
public func conv2dBackward(
  _ gradOutput: Tensor, input: Tensor, weight: Tensor, scalingPlanes planeScale: Tensor, stride: IntOrPair = 1,
  padding: IntOrPair = 0, dilation: IntOrPair = 1, groups: Int = 1, into destination: GradientDestination? = nil
) -> (input: Tensor?, weight: Tensor) {
  let g = ConvolutionGeometry(
    "conv2dBackward", input: input.shape, weight: weight.shape, stride: stride, padding: padding, dilation: dilation,
    groups: groups)
  require(
    gradOutput.shape == g.outputShape && gradOutput.dtype == input.dtype,
    "conv2dBackward: gradient \(gradOutput.shape) (\(gradOutput.dtype)) does not match output \(g.outputShape) (\(input.dtype))")
  destination?.check(channels: input)
  guard let (winograd, factors) = scaledWinograd(g, input, weight, planeScale, "conv2dBackward"),
    destination?.parts.allSatisfy({ PlaneLayout.hasDensePlanes($0.tensor) }) ?? true
  else {
    let both = conv2dBackward(
      gradOutput, input: input * planeScale, weight: weight, stride: stride, padding: padding, dilation: dilation, groups: groups)
    guard let destination else { return (both.input * planeScale, both.weight) }
    multiply(both.input, planeScale, into: destination)
    return (nil, both.weight)
  }
  let dx = destination == nil
    ? Tensor(uninitializedShape: input.shape, dtype: .float32, strides: PlaneLayout.channelMajorStrides(input.shape)) : nil
  let target = dx.map { InputGradientTarget($0) } ?? InputGradientTarget(destination!)
  let dw = factors.withUnsafeBufferPointer {
    winogradGradients(winograd, gradOutput, input, weight, scalingPlanes: $0.baseAddress!, into: target)
  }
  withExtendedLifetime(destination) {}
  return (dx, dw)
}

/// The Winograd convolution of `g` and the factors of `planeScale` as [N][C] Float32 values, when
/// that path takes the scaled convolution (Float32 operands on AVX2); nil otherwise.
private func scaledWinograd(
  _ g: ConvolutionGeometry, _ input: Tensor, _ weight: Tensor, _ planeScale: Tensor, _ operation: String
) -> (WinogradConvolution, [Float])? {
  let planes = [input.shape[0], input.shape[1], 1, 1]
  require(
    planeScale.dtype == input.dtype && planeScale.rank <= 4 && Shape.broadcast(planeScale.shape, planes) == planes,
    "\(operation): plane factors \(planeScale.shape) (\(planeScale.dtype)) do not broadcast to \(planes) (\(input.dtype))")
  guard case .winograd(let winograd) = ConvolutionPlan(g).method, input.dtype == .float32, weight.dtype == .float32,
    WinogradConvolution.handles(Float.self)
  else { return nil }
  return (winograd, broadcast(planeScale, to: planes).contiguous().scalars(as: Float.self))
}
