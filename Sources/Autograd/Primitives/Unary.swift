import TensorModule

// Element-wise primitives of one operand. Each saves only what its derivative needs.

/// e^x.
public func exp(_ x: Variable) -> Variable {
  let y = TensorModule.exp(x.value)
  return recordOperation("exp", y, inputs: [x]) { [y] grad in [grad * y] }
}

/// The natural logarithm.
public func log(_ x: Variable) -> Variable {
  let value = x.value
  return recordOperation("log", TensorModule.log(value), inputs: [x]) { [value] grad in [grad / value] }
}

/// The square root.
public func sqrt(_ x: Variable) -> Variable {
  let y = TensorModule.sqrt(x.value)
  return recordOperation("sqrt", y, inputs: [x]) { [y] grad in [grad / (y * 2)] }
}

/// max(x, 0); the gradient passes where the output is positive.
public func relu(_ x: Variable) -> Variable {
  let y = TensorModule.relu(x.value)
  return recordOperation("relu", y, inputs: [x]) { [y] grad in [reluBackward(grad, output: y)] }
}
