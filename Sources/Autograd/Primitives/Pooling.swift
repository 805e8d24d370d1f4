import TensorModule

/// The maximum of each `kernelSize` window of `input` [N, C, H, W].
public func maxPool2d(_ input: Variable, kernelSize: IntOrPair, stride: IntOrPair? = nil, padding: IntOrPair = 0) -> Variable {
  let x = input.value
  let y = TensorModule.maxPool2d(x, kernelSize: kernelSize, stride: stride, padding: padding)
  return recordOperation("maxPool2d", y, inputs: [input]) { [x] grad in
    [maxPool2dBackward(grad, x, kernelSize: kernelSize, stride: stride, padding: padding)]
  }
}

/// The mean of each `kernelSize` window of `input` [N, C, H, W].
public func avgPool2d(
  _ input: Variable, kernelSize: IntOrPair, stride: IntOrPair? = nil, padding: IntOrPair = 0, countingPadding: Bool = true
) -> Variable {
  let shape = input.shape
  let y = TensorModule.avgPool2d(input.value, kernelSize: kernelSize, stride: stride, padding: padding, countingPadding: countingPadding)
  return recordOperation("avgPool2d", y, inputs: [input]) { grad in
    [avgPool2dBackward(grad, inputShape: shape, kernelSize: kernelSize, stride: stride, padding: padding, countingPadding: countingPadding)]
  }
}
