import TensorModule

/// 2-D convolution of `input` [N, C, H, W] with `weight` [O, C / groups, KH, KW]; no bias.
///
/// The input is saved for the weight gradient and the weight for the input gradient, each only
/// when the other operand needs a gradient. The pullback does not need the output, so in a
/// checkpoint replay it is computed only if read (rule 10).
public func conv2d(
  _ input: Variable, _ weight: Variable, stride: IntOrPair = 1, padding: IntOrPair = 0,
  dilation: IntOrPair = 1, groups: Int = 1
) -> Variable {
  let inputShape = input.shape, weightShape = weight.shape
  let w = weight.value
  // In a replay the input may itself be deferred (optimisation A): it is read when the value or the
  // weight gradient needs it, so a normalised map feeding a convolution whose output the region's
  // policy kept is computed only for the weight gradient, and freed with it. Elsewhere it is read now.
  let x: () -> Tensor = Context.current.replaying != nil ? { input.value } : { [value = input.value] in value }
  let shape = conv2dOutputShape(
    input: inputShape, weight: weightShape, stride: stride, padding: padding, dilation: dilation, groups: groups)
  let compute = {
    countMultiplyAccumulates(shape.reduce(1, *) * weightShape[1] * weightShape[2] * weightShape[3])
    return TensorModule.conv2d(x(), w, stride: stride, padding: padding, dilation: dilation, groups: groups)
  }
  let savedInput = weight.requiresGrad ? x : nil, savedWeight = input.requiresGrad ? w : nil
  let accumulated = input.requiresGrad ? AccumulatedGradient(input) : nil
  return recordOperation("conv2d", deferring: compute, shape: shape, dtype: input.dtype, inputs: [input, weight]) { grad in
    if let savedInput, let savedWeight {
      let x = savedInput()
      if let destination = accumulated?.destination(like: x) {  // a residual block's input: added where it is written
        let dw = conv2dBackward(
          grad, input: x, weight: savedWeight, stride: stride, padding: padding, dilation: dilation, groups: groups, into: destination)
        checkSent(destination, "conv2d")
        return [nil, dw]
      }
      let g = conv2dBackward(grad, input: x, weight: savedWeight, stride: stride, padding: padding, dilation: dilation, groups: groups)
      return [g.input, g.weight]
    }
    return [
      savedWeight.map {
        conv2dBackwardInput(grad, $0, inputShape: inputShape, stride: stride, padding: padding, dilation: dilation, groups: groups)
      },
      savedInput.map {
        conv2dBackwardWeight(grad, $0(), weightShape: weightShape, stride: stride, padding: padding, dilation: dilation, groups: groups)
      },
    ]
  }
}

/// `conv2d(input * Variable(planeScale), weight, ...)`, with `planeScale` a constant holding one
/// factor per plane of `input` ([N, C, 1, 1], or a shape that broadcasts to it): a channel
/// dropout's mask followed by a convolution.
///
/// A fused primitive rather than the composition, for memory and speed: the convolution applies the
/// factors as it transforms its input (Winograd, Float32 on AVX2), so the dropped map is neither
/// written nor kept for the weight gradient, and when `input` is a window of a feature buffer its
/// gradient goes straight into those of the buffer's pieces
/// (``recordChannelView(_:name:channels:pieces:)``). The values and gradients equal the
/// composition's bit for bit (`Tests/AutogradTests`).
public func conv2d(
  _ input: Variable, _ weight: Variable, scalingPlanes planeScale: Tensor, stride: IntOrPair = 1, padding: IntOrPair = 0,
  dilation: IntOrPair = 1, groups: Int = 1
) -> Variable {
  let weightShape = weight.shape, w = weight.value
  // As in conv2d: in a replay the input is read only when the value or a gradient needs it.
  let x: () -> Tensor = Context.current.replaying != nil ? { input.value } : { [value = input.value] in value }
  let shape = conv2dOutputShape(
    input: input.shape, weight: weightShape, stride: stride, padding: padding, dilation: dilation, groups: groups)
  let compute = {
    countMultiplyAccumulates(shape.reduce(1, *) * weightShape[1] * weightShape[2] * weightShape[3])
    return TensorModule.conv2d(
      x(), w, scalingPlanes: planeScale, stride: stride, padding: padding, dilation: dilation, groups: groups)
  }
  let needInput = input.requiresGrad, needWeight = weight.requiresGrad, sink = input.gradientSink
  let accumulated = needInput ? AccumulatedGradient(input) : nil
  // Only a channel view has a sink, and its value is no deferred one: reading its strides computes nothing.
  let view = sink.map { _ in (shape: input.shape, strides: input.value.strides, dtype: input.dtype) }
  return recordOperation("conv2d", deferring: compute, shape: shape, dtype: input.dtype, inputs: [input, weight]) { grad in
    guard needInput else {  // a frozen input: the weight gradient alone, of the scaled input
      return [nil, conv2dBackwardWeight(grad, x() * planeScale, weightShape: weightShape, stride: stride, padding: padding, dilation: dilation, groups: groups)]
    }
    let destination = view.flatMap { sink?.destination(shape: $0.shape, strides: $0.strides, dtype: $0.dtype) } ?? accumulated?.destination(like: x())
    let g = conv2dBackward(
      grad, input: x(), weight: w, scalingPlanes: planeScale, stride: stride, padding: padding, dilation: dilation, groups: groups,
      into: destination)
    if let destination { checkSent(destination, "conv2d") }
    return [g.input, needWeight ? g.weight : nil]
  }
}

/// Several convolutions of one input with their outputs concatenated along channels in weight
/// order, computed straight into one result (the depthwise branches of a Multiception layer, one
/// per kernel size, materialise only their concatenation). No bias.
///
/// - `paddings`: one per weight, so that the output sizes agree ((K - 1) / 2 for odd K).
public func concatenatedConv2d(
  _ input: Variable, _ weights: [Variable], stride: IntOrPair = 1, paddings: [IntOrPair], groups: Int = 1
) -> Variable {
  let inputShape = input.shape
  let x = input.value, ws = weights.map(\.value)
  let y = TensorModule.concatenatedConv2d(x, ws, stride: stride, paddings: paddings, groups: groups)
  let sizes = ws.map { $0.shape[0] }
  countMultiplyAccumulates(zip(ws, sizes).reduce(0) { $0 + y.count / y.shape[1] * $1.1 * $1.0.shape[1] * $1.0.shape[2] * $1.0.shape[3] })
  return recordOperation("concatenatedConv2d", y, inputs: [input] + weights) { grad in
    let parts = split(grad, sizes: sizes, alongAxis: 1)
    var dx: Tensor?
    var dws: [Tensor?] = []
    for (part, (w, padding)) in zip(parts, zip(ws, paddings)) {
      let d = conv2dBackwardInput(part, w, inputShape: inputShape, stride: stride, padding: padding, groups: groups)
      dx = dx.map { $0 + d } ?? d
      dws.append(conv2dBackwardWeight(part, x, weightShape: w.shape, stride: stride, padding: padding, groups: groups))
    }
    return [dx] + dws
  }
}

/// Convolutions of consecutive channel parts of one input, each by its own weight (part i: the
/// `weights[i].shape[1]` channels after the earlier parts', `weights[i]` at `paddings[i]`), their
/// outputs concatenated along channels in weight order: the value and gradients of
/// `concatenate(zip(weights, split(input, ...)).map { conv2d($1, $0, ...) }, alongAxis: 1)`,
/// computed in place (see `TensorModule.mixedConv2d(_:_:stride:paddings:)`). No bias.
public func mixedConv2d(_ input: Variable, _ weights: [Variable], stride: IntOrPair = 1, paddings: [IntOrPair]) -> Variable {
  let x = input.value, ws = weights.map(\.value)
  let y = TensorModule.mixedConv2d(x, ws, stride: stride, paddings: paddings)
  countMultiplyAccumulates(ws.reduce(0) { $0 + y.count / y.shape[1] * $1.count })
  return recordOperation("mixedConv2d", y, inputs: [input] + weights) { grad in
    let g = mixedConv2dBackward(grad, input: x, weights: ws, stride: stride, paddings: paddings)
    return [g.input] + g.weights
  }
}
