/// Mixed convolutions: consecutive channel parts of one input, each convolved by a weight of its
/// own (its own kernel size), their outputs one after another along channels.
///
/// The composition (split the input, convolve each part, concatenate) copies every output into
/// the concatenation and, in the backward pass, every part's input gradient into the whole one.
/// Here each part's kernels read their channels of the input where they lie and write their
/// channels of the result, and of the input gradient, in place: the same kernels on the same
/// values, so the same bits as the composition, without the two copies of the layer's maps.

/// The convolutions of `input`'s channel parts: part i is the `weights[i].shape[1]` channels after
/// the earlier parts', convolved with `weights[i]` [O_i, C_i, KH_i, KW_i] at `paddings[i]` and
/// `stride` (no bias, no groups).
///
/// - Returns: [N, ΣO_i, OH, OW], stored channel-major: part i's output in channels
///   O_0 + ... + O_(i-1) ..< O_0 + ... + O_i.
/// - Precondition: the parts' channels add up to the input's, and every part's output has the
///   same size; messages name every shape.
public func mixedConv2d(_ input: Tensor, _ weights: [Tensor], stride: IntOrPair = 1, paddings: [IntOrPair]) -> Tensor {
  let parts = MixedParts("mixedConv2d", input: input.shape, weights: weights.map(\.shape), stride: stride, paddings: paddings)
  let out = Tensor(uninitializedShape: parts.outputShape, dtype: input.dtype, strides: PlaneLayout.channelMajorStrides(parts.outputShape))
  for (i, g) in parts.geometries.enumerated() {
    convolve(slice(input, parts.inputs[i], alongAxis: 1), weights[i], g, into: slice(out, parts.outputs[i], alongAxis: 1))
  }
  return out
}

/// The gradients of ``mixedConv2d(_:_:stride:paddings:)`` with respect to its input (stored
/// channel-major, each part's channels written in place) and to each weight.
public func mixedConv2dBackward(
  _ gradOutput: Tensor, input: Tensor, weights: [Tensor], stride: IntOrPair = 1, paddings: [IntOrPair]
) -> (input: Tensor, weights: [Tensor]) {
  let parts = MixedParts("mixedConv2dBackward", input: input.shape, weights: weights.map(\.shape), stride: stride, paddings: paddings)
  require(
    gradOutput.shape == parts.outputShape,
    "mixedConv2dBackward: gradient \(gradOutput.shape) does not match output \(parts.outputShape) (input \(input.shape))")
  require(
    weights.allSatisfy { $0.dtype == input.dtype } && gradOutput.dtype == input.dtype,
    "mixedConv2dBackward: dtypes differ (gradient \(gradOutput.dtype), input \(input.dtype), weights \(weights.map(\.dtype)))")
  let dy = gradOutput.channelMajor(), x = input.withDensePlanes()
  let dx = Tensor(uninitializedShape: input.shape, dtype: input.dtype, strides: PlaneLayout.channelMajorStrides(input.shape))
  let dws = weights.map { Tensor(uninitializedShape: $0.shape, dtype: input.dtype) }
  for (i, g) in parts.geometries.enumerated() {
    let plan = ConvolutionPlan(g), w = weights[i].contiguous()
    let dyPart = slice(dy, parts.outputs[i], alongAxis: 1), xPart = slice(x, parts.inputs[i], alongAxis: 1)
    let dxPart = slice(dx, parts.inputs[i], alongAxis: 1)
    func kernel<T: TensorScalar>(_: T.Type) {
      plan.gradients(dyPart, xPart, w, inputGradient: dxPart, weightGradient: dws[i], T.self)
    }
    input.dtype.dispatch(kernel, kernel)
  }
  return (dx, dws)
}

/// The parts of a mixed convolution: each part's geometry and its channels in the input and in
/// the output.
private struct MixedParts {
  let geometries: [ConvolutionGeometry]
  let inputs: [Range<Int>], outputs: [Range<Int>]
  let outputShape: [Int]

  init(_ operation: String, input: [Int], weights: [[Int]], stride: IntOrPair, paddings: [IntOrPair]) {
    require(
      input.count == 4 && !weights.isEmpty && weights.count == paddings.count && weights.allSatisfy({ $0.count == 4 }),
      "\(operation): an input [N, C, H, W] and one weight [O, C_i, KH, KW] and one padding per part, got input \(input), weights \(weights), \(paddings.count) paddings")
    let channels = weights.map { $0[1] }
    require(
      channels.reduce(0, +) == input[1],
      "\(operation): the weights' input channels \(channels) do not add up to the input's \(input[1]) (input \(input))")
    func ranges(_ sizes: [Int]) -> [Range<Int>] {
      sizes.indices.map { i in sizes[..<i].reduce(0, +)..<sizes[...i].reduce(0, +) }
    }
    inputs = ranges(channels)
    outputs = ranges(weights.map { $0[0] })
    geometries = weights.indices.map { i in
      ConvolutionGeometry(
        operation, input: [input[0], channels[i], input[2], input[3]], weight: weights[i], stride: stride, padding: paddings[i],
        dilation: 1, groups: 1)
    }
    let first = geometries[0].outputShape
    require(
      geometries.allSatisfy { $0.outputShape[2...] == first[2...] },
      "\(operation): outputs \(geometries.map(\.outputShape)) differ in size (weights \(weights), paddings \(paddings))")
    outputShape = [first[0], outputs.last!.upperBound, first[2], first[3]]
  }
}
