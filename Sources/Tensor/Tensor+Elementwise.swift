/// The element-wise functions of one tensor. Each keeps its operand's memory order.
enum UnaryOperation {
  case negate, exp, log, sqrt, abs, sign, reciprocal, relu, sigmoid, tanh
  case power(Double)
  case clamp(Double, Double)
  case affine(scale: Double, shift: Double)
  case step(threshold: Double)  // 1 where x > threshold, else 0
}

extension Tensor {
  /// Applies `operation` to every element; the result has this tensor's dense memory order.
  func map(_ operation: UnaryOperation) -> Tensor {
    let x = isDense ? self : contiguous()
    var out = Tensor(uninitializedShape: shape, dtype: dtype, strides: x.strides)
    switch dtype {
    case .float32: unaryKernel(operation, x.base(Float.self), out.base(Float.self), count)
    case .float64: unaryKernel(operation, x.base(Double.self), out.base(Double.self), count)
    }
    out.strides = x.strides
    return out
  }
}

private func unaryKernel<T: TensorScalar>(
  _ operation: UnaryOperation, _ x: UnsafeMutablePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int
) {
  @inline(__always) func apply(_ f: (T) -> T) {
    Parallel.forRanges(n, costPerItem: 4) { r in for i in r { y[i] = f(x[i]) } }
  }
  switch operation {
  case .negate: apply { -$0 }
  case .exp: apply { T.exp($0) }
  case .log: apply { T.log($0) }
  case .sqrt: apply { $0.squareRoot() }
  case .abs: apply { Swift.abs($0) }
  case .sign: apply { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }
  case .reciprocal: apply { 1 / $0 }
  case .relu: apply { $0 > 0 ? $0 : 0 }
  case .sigmoid: apply { 1 / (1 + T.exp(-$0)) }
  case .tanh: apply { T.tanh($0) }
  case .power(let p):
    // Integral exponents are defined for negative bases too.
    let e = T(p), n = Int(exactly: p)
    if p == 2 { apply { $0 * $0 } } else if let n { apply { T.pow($0, n) } } else { apply { T.pow($0, e) } }
  case .clamp(let lo, let hi):
    let l = T(lo), h = T(hi)
    apply { Swift.min(Swift.max($0, l), h) }
  case .affine(let scale, let shift):
    let a = T(scale), b = T(shift)
    apply { a * $0 + b }
  case .step(let threshold):
    let t = T(threshold)
    apply { $0 > t ? 1 : 0 }
  }
}

/// -x, element-wise.
public prefix func - (x: Tensor) -> Tensor { x.map(.negate) }
/// e^x, element-wise.
public func exp(_ x: Tensor) -> Tensor { x.map(.exp) }
/// The natural logarithm, element-wise.
public func log(_ x: Tensor) -> Tensor { x.map(.log) }
/// The square root, element-wise.
public func sqrt(_ x: Tensor) -> Tensor { x.map(.sqrt) }
/// The absolute value, element-wise.
public func abs(_ x: Tensor) -> Tensor { x.map(.abs) }
/// -1, 0 or 1 by the sign of each element.
public func sign(_ x: Tensor) -> Tensor { x.map(.sign) }
/// 1 / x, element-wise.
public func reciprocal(_ x: Tensor) -> Tensor { x.map(.reciprocal) }
/// max(x, 0), element-wise.
public func relu(_ x: Tensor) -> Tensor { x.map(.relu) }
/// min(max(x, 0), 6), element-wise.
public func relu6(_ x: Tensor) -> Tensor { x.map(.clamp(0, 6)) }
/// 1 / (1 + e^-x), element-wise.
public func sigmoid(_ x: Tensor) -> Tensor { x.map(.sigmoid) }
/// The hyperbolic tangent, element-wise.
public func tanh(_ x: Tensor) -> Tensor { x.map(.tanh) }
/// x^exponent, element-wise.
public func pow(_ x: Tensor, _ exponent: Double) -> Tensor { x.map(.power(exponent)) }
/// Each element limited to [lower, upper].
public func clamp(_ x: Tensor, min lower: Double, max upper: Double) -> Tensor { x.map(.clamp(lower, upper)) }
/// 1 where an element is greater than `threshold`, 0 elsewhere.
public func step(_ x: Tensor, threshold: Double = 0) -> Tensor { x.map(.step(threshold: threshold)) }
/// `scale * x + shift`, element-wise, in one pass.
public func affine(_ x: Tensor, scale: Double, shift: Double) -> Tensor { x.map(.affine(scale: scale, shift: shift)) }
