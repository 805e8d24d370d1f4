import TensorModule

// Activation functions built from the primitives; none has a pullback of its own. Where a branch
// is chosen per element, `select` takes a constant mask from the input's value, so the gradient
// of each element is that of the branch it took.

/// log(1 + e^x), computed as x above `threshold` (PyTorch's default 20), where the two agree to
/// working precision and e^x would overflow.
public func softplus(_ x: Variable, threshold: Double = 20) -> Variable {
  let linear = step(x.value, threshold: threshold)
  return select(linear, x, log1p(exp(clamp(x, min: -.infinity, max: threshold))))
}

/// x where x > 0, else `negativeSlope` · x.
public func leakyReLU(_ x: Variable, negativeSlope: Double = 0.01) -> Variable {
  select(step(x.value), x, x * negativeSlope)
}

/// x where x > 0, else α(e^x - 1) (Clevert et al. 2016).
public func elu(_ x: Variable, alpha: Double = 1) -> Variable {
  select(step(x.value), x, expm1(clamp(x, min: -.infinity, max: 0)) * alpha)
}

/// x · sigmoid(x), also called swish (Ramachandran et al. 2017).
public func silu(_ x: Variable) -> Variable { x * sigmoid(x) }

/// How ``gelu(_:approximation:)`` computes the Gaussian CDF.
public enum GELUApproximation: Sendable {
  /// Exactly, with the error function: x · Φ(x).
  case none
  /// With Hendrycks and Gimpel's tanh form, as GPT-2 and BERT use it.
  case tanh
}

/// The Gaussian error linear unit x · Φ(x) (Hendrycks and Gimpel 2016).
///
/// The exact form is a primitive (its pullback in Primitives/Unary.swift): as a composite of `erf`
/// it made four passes over a Transformer's widest activations and one libm call per element.
public func gelu(_ x: Variable, approximation: GELUApproximation = .none) -> Variable {
  switch approximation {
  case .none: return exactGELU(x)
  case .tanh:
    let inner = (x + x * x * x * 0.044715) * (2 / Double.pi).squareRoot()
    return x * (tanh(inner) + 1) * 0.5
  }
}
