import CKernels

/// The element-wise functions of one tensor. Each keeps its operand's memory order.
enum UnaryOperation {
  case negate, exp, log, sqrt, abs, sign, reciprocal, relu, sigmoid, tanh
  case erf, sin, cos, log1p, expm1
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
    func kernel<T: TensorScalar>(_: T.Type) { unaryKernel(operation, x.base(T.self), out.base(T.self), count) }
    dtype.dispatch(kernel, kernel)
    out.strides = x.strides
    return out
  }
}

/// One element-wise function of one scalar, as a value: a kernel specialised for its type inlines
/// the function into its loop, which then vectorises (a closure argument is called per element).
private protocol UnaryFunction {
  associatedtype Scalar: TensorScalar
  func callAsFunction(_ x: Scalar) -> Scalar
}

private struct Negate<T: TensorScalar>: UnaryFunction { @inline(__always) func callAsFunction(_ x: T) -> T { -x } }
private struct Exp<T: TensorScalar>: UnaryFunction { @inline(__always) func callAsFunction(_ x: T) -> T { T.exp(x) } }
private struct Log<T: TensorScalar>: UnaryFunction { @inline(__always) func callAsFunction(_ x: T) -> T { T.log(x) } }
private struct Sqrt<T: TensorScalar>: UnaryFunction { @inline(__always) func callAsFunction(_ x: T) -> T { x.squareRoot() } }
private struct Abs<T: TensorScalar>: UnaryFunction { @inline(__always) func callAsFunction(_ x: T) -> T { Swift.abs(x) } }
private struct Sign<T: TensorScalar>: UnaryFunction {
  @inline(__always) func callAsFunction(_ x: T) -> T { x > 0 ? 1 : (x < 0 ? -1 : 0) }
}
private struct Reciprocal<T: TensorScalar>: UnaryFunction { @inline(__always) func callAsFunction(_ x: T) -> T { 1 / x } }
private struct ReLU<T: TensorScalar>: UnaryFunction { @inline(__always) func callAsFunction(_ x: T) -> T { x > 0 ? x : 0 } }
private struct Sigmoid<T: TensorScalar>: UnaryFunction { @inline(__always) func callAsFunction(_ x: T) -> T { 1 / (1 + T.exp(-x)) } }
private struct Tanh<T: TensorScalar>: UnaryFunction { @inline(__always) func callAsFunction(_ x: T) -> T { T.tanh(x) } }
private struct Erf<T: TensorScalar>: UnaryFunction { @inline(__always) func callAsFunction(_ x: T) -> T { T.erf(x) } }
private struct Sin<T: TensorScalar>: UnaryFunction { @inline(__always) func callAsFunction(_ x: T) -> T { T.sin(x) } }
private struct Cos<T: TensorScalar>: UnaryFunction { @inline(__always) func callAsFunction(_ x: T) -> T { T.cos(x) } }
private struct Log1p<T: TensorScalar>: UnaryFunction { @inline(__always) func callAsFunction(_ x: T) -> T { T.log(onePlus: x) } }
private struct Expm1<T: TensorScalar>: UnaryFunction { @inline(__always) func callAsFunction(_ x: T) -> T { T.expMinusOne(x) } }
private struct Square<T: TensorScalar>: UnaryFunction { @inline(__always) func callAsFunction(_ x: T) -> T { x * x } }
private struct IntegerPower<T: TensorScalar>: UnaryFunction {
  let n: Int
  @inline(__always) func callAsFunction(_ x: T) -> T { T.pow(x, n) }
}
private struct RealPower<T: TensorScalar>: UnaryFunction {
  let e: T
  @inline(__always) func callAsFunction(_ x: T) -> T { T.pow(x, e) }
}
private struct Clamp<T: TensorScalar>: UnaryFunction {
  let low: T, high: T
  @inline(__always) func callAsFunction(_ x: T) -> T { Swift.min(Swift.max(x, low), high) }
}
private struct Affine<T: TensorScalar>: UnaryFunction {
  let scale: T, shift: T
  @inline(__always) func callAsFunction(_ x: T) -> T { scale * x + shift }
}
private struct Step<T: TensorScalar>: UnaryFunction {
  let threshold: T
  @inline(__always) func callAsFunction(_ x: T) -> T { x > threshold ? 1 : 0 }
}

private func unaryKernel<T: TensorScalar>(
  _ operation: UnaryOperation, _ x: UnsafeMutablePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int
) {
  func apply<F: UnaryFunction>(_ f: F) where F.Scalar == T {
    Parallel.forRanges(n, costPerItem: 4) { r in for i in r { y[i] = f(x[i]) } }
  }
  switch operation {
  case .negate: apply(Negate())
  case .exp: apply(Exp())
  case .log: apply(Log())
  case .sqrt: apply(Sqrt())
  case .abs: apply(Abs())
  case .sign: apply(Sign())
  case .reciprocal: apply(Reciprocal())
  case .relu: apply(ReLU())
  case .sigmoid: apply(Sigmoid())
  case .tanh: apply(Tanh())
  case .erf: apply(Erf())
  case .sin: apply(Sin())
  case .cos: apply(Cos())
  case .log1p: apply(Log1p())
  case .expm1: apply(Expm1())
  case .power(let p):
    // Integral exponents are defined for negative bases too.
    if p == 2 { apply(Square()) } else if let n = Int(exactly: p) { apply(IntegerPower(n: n)) } else { apply(RealPower(e: T(p))) }
  case .clamp(let lo, let hi): apply(Clamp(low: T(lo), high: T(hi)))
  case .affine(let scale, let shift): apply(Affine(scale: T(scale), shift: T(shift)))
  case .step(let threshold): apply(Step(threshold: T(threshold)))
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
/// The error function, element-wise.
public func erf(_ x: Tensor) -> Tensor { x.map(.erf) }
/// The sine, element-wise.
public func sin(_ x: Tensor) -> Tensor { x.map(.sin) }
/// The cosine, element-wise.
public func cos(_ x: Tensor) -> Tensor { x.map(.cos) }
/// log(1 + x), element-wise, accurate for small x.
public func log1p(_ x: Tensor) -> Tensor { x.map(.log1p) }
/// e^x - 1, element-wise, accurate for small x.
public func expm1(_ x: Tensor) -> Tensor { x.map(.expm1) }
/// x^exponent, element-wise.
public func pow(_ x: Tensor, _ exponent: Double) -> Tensor { x.map(.power(exponent)) }
/// Each element limited to [lower, upper].
public func clamp(_ x: Tensor, min lower: Double, max upper: Double) -> Tensor { x.map(.clamp(lower, upper)) }
/// The gradient of ``clamp(_:min:max:)`` at `input`: `gradient` where lower < input < upper, 0
/// elsewhere, at the ends and where the input is NaN. The result has `input`'s dense memory order.
///
/// The ends are excluded as PyTorch's `relu6` and `hardtanh` have always done and its `clamp` has done
/// since 2.14: at an end the output is the limit, so the gradient takes the saturated side.
public func clampBackward(_ gradient: Tensor, input: Tensor, min lower: Double, max upper: Double) -> Tensor {
  require(
    gradient.shape == input.shape && gradient.dtype == input.dtype,
    "clampBackward: gradient \(gradient.shape) \(gradient.dtype) and input \(input.shape) \(input.dtype) differ")
  let x = input.isDense ? input : input.contiguous(), g = gradient.laidOut(like: x.strides)
  let out = Tensor(uninitializedShape: x.shape, dtype: x.dtype, strides: x.strides)
  func kernel<T: TensorScalar>(_: T.Type) {
    let px = x.base(T.self), pg = g.base(T.self), po = out.base(T.self), (lo, hi) = (T(lower), T(upper))
    // The Swift loop compiles to a branch per element (for the NaN case), which mispredicts on
    // activations scattered around the limits; the C kernel masks eight lanes at once.
    Parallel.forRanges(x.count, costPerItem: 2) { r in
      if usesVectorKernels(T.self) {
        reprise_clamp_backward_f32(
          floats(px + r.lowerBound), floats(pg + r.lowerBound), floats(po + r.lowerBound), r.count, Float(lower), Float(upper))
      } else {
        for i in r { po[i] = px[i] > lo && px[i] < hi ? pg[i] : 0 }
      }
    }
  }
  x.dtype.dispatch(kernel, kernel)
  return out
}
/// 1 where an element is greater than `threshold`, 0 elsewhere.
public func step(_ x: Tensor, threshold: Double = 0) -> Tensor { x.map(.step(threshold: threshold)) }
/// `scale * x + shift`, element-wise, in one pass.
public func affine(_ x: Tensor, scale: Double, shift: Double) -> Tensor { x.map(.affine(scale: scale, shift: shift)) }
