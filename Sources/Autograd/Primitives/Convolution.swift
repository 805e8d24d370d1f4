import TensorModule

/// 2-D convolution of `input` [N, C, H, W] with `weight` [O, C / groups, KH, KW]; no bias.
///
/// The input is saved for the weight gradient and the weight for the input gradient, each only
/// when the other operand needs a gradient.
public func conv2d(
  _ input: Variable, _ weight: Variable, stride: IntOrPair = 1, padding: IntOrPair = 0,
  dilation: IntOrPair = 1, groups: Int = 1
) -> Variable {
  let inputShape = input.shape, weightShape = weight.shape
  let x = weight.requiresGrad ? input.value : nil, w = input.requiresGrad ? weight.value : nil
  let y = TensorModule.conv2d(input.value, weight.value, stride: stride, padding: padding, dilation: dilation, groups: groups)
  countMultiplyAccumulates(y.count * weightShape[1] * weightShape[2] * weightShape[3])
  return recordOperation("conv2d", y, inputs: [input, weight]) { grad in
    [
      w.map {
        conv2dBackwardInput(grad, $0, inputShape: inputShape, stride: stride, padding: padding, dilation: dilation, groups: groups)
      },
      x.map {
        conv2dBackwardWeight(grad, $0, weightShape: weightShape, stride: stride, padding: padding, dilation: dilation, groups: groups)
      },
    ]
  }
}
