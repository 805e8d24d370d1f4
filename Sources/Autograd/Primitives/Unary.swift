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

/// Each element limited to [lower, upper] (NaN stays NaN); the gradient flows where
/// lower < x < upper, as in PyTorch's `relu6`, `hardtanh` and (since 2.14) `clamp`. A primitive
/// rather than `minimum(maximum(x, lower), upper)`: one pass each way instead of two comparisons and
/// two selections forward and four backward, and only the input saved instead of two masks.
public func clamp(_ x: Variable, min lower: Double, max upper: Double) -> Variable {
  let value = x.value
  return recordOperation("clamp", TensorModule.clamp(value, min: lower, max: upper), inputs: [x]) { [value] grad in
    [clampBackward(grad, input: value, min: lower, max: upper)]
  }
}

/// 1 / (1 + e^-x). A primitive rather than a composite of `exp` and `reciprocal`: its derivative
/// y(1 - y) needs only the output and stays finite where e^-x overflows.
public func sigmoid(_ x: Variable) -> Variable {
  let y = TensorModule.sigmoid(x.value)
  return recordOperation("sigmoid", y, inputs: [x]) { [y] grad in [grad * y * (1 - y)] }
}

/// The hyperbolic tangent; its derivative 1 - y² needs only the output.
public func tanh(_ x: Variable) -> Variable {
  let y = TensorModule.tanh(x.value)
  return recordOperation("tanh", y, inputs: [x]) { [y] grad in [grad * (1 - y * y)] }
}

/// The error function; its derivative is 2/√π · e^(-x²).
public func erf(_ x: Variable) -> Variable {
  let value = x.value
  return recordOperation("erf", TensorModule.erf(value), inputs: [x]) { [value] grad in
    [grad * TensorModule.exp(-(value * value)) * (2 / Double.pi.squareRoot())]
  }
}

/// x · Φ(x), exact GELU; ``gelu(_:approximation:)`` is its public spelling. Its derivative
/// Φ(x) + x · φ(x) needs the input.
func exactGELU(_ x: Variable) -> Variable {
  let value = x.value
  return recordOperation("gelu", TensorModule.gelu(value), inputs: [x]) { [value] grad in [geluGradient(grad, input: value)] }
}

/// The sine.
public func sin(_ x: Variable) -> Variable {
  let value = x.value
  return recordOperation("sin", TensorModule.sin(value), inputs: [x]) { [value] grad in [grad * TensorModule.cos(value)] }
}

/// The cosine.
public func cos(_ x: Variable) -> Variable {
  let value = x.value
  return recordOperation("cos", TensorModule.cos(value), inputs: [x]) { [value] grad in [-(grad * TensorModule.sin(value))] }
}

/// log(1 + x), accurate for small x.
public func log1p(_ x: Variable) -> Variable {
  let value = x.value
  return recordOperation("log1p", TensorModule.log1p(value), inputs: [x]) { [value] grad in [grad / (value + 1)] }
}

/// e^x - 1, accurate for small x; its derivative y + 1 needs only the output.
public func expm1(_ x: Variable) -> Variable {
  let y = TensorModule.expm1(x.value)
  return recordOperation("expm1", y, inputs: [x]) { [y] grad in [grad * (y + 1)] }
}
