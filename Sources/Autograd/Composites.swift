import TensorModule

// Operations built from the primitives. None has a pullback of its own: their gradients follow
// from the primitives they are made of.

extension Variable {
  /// a + b, with broadcasting.
  public static func + (a: Variable, b: Variable) -> Variable { add(a, b) }
  /// a - b, with broadcasting.
  public static func - (a: Variable, b: Variable) -> Variable { add(a, negate(b)) }
  /// a * b, with broadcasting.
  public static func * (a: Variable, b: Variable) -> Variable { multiply(a, b) }
  /// a / b, with broadcasting.
  public static func / (a: Variable, b: Variable) -> Variable { multiply(a, reciprocal(b)) }
  /// -x.
  public static prefix func - (x: Variable) -> Variable { negate(x) }
  /// a + b for a constant b.
  public static func + (a: Variable, b: Double) -> Variable { a + a.constant(b) }
  /// a - b for a constant b.
  public static func - (a: Variable, b: Double) -> Variable { a + a.constant(-b) }
  /// a * b for a constant b.
  public static func * (a: Variable, b: Double) -> Variable { a * a.constant(b) }
  /// a / b for a constant b.
  public static func / (a: Variable, b: Double) -> Variable { a * a.constant(1 / b) }
  /// a + b for a constant a.
  public static func + (a: Double, b: Variable) -> Variable { b.constant(a) + b }
  /// a - b for a constant a.
  public static func - (a: Double, b: Variable) -> Variable { b.constant(a) - b }
  /// a * b for a constant a.
  public static func * (a: Double, b: Variable) -> Variable { b.constant(a) * b }
  /// a / b for a constant a.
  public static func / (a: Double, b: Variable) -> Variable { b.constant(a) * reciprocal(b) }

  /// A constant scalar of this variable's dtype.
  func constant(_ value: Double) -> Variable { Variable(Tensor(value, dtype: dtype)) }
}

/// The mean over `axes` (all when `nil`).
public func mean(_ x: Variable, alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> Variable {
  let s = sum(x, alongAxes: axes, keepingDimensions: keepingDimensions)
  return s * (Double(s.value.count) / Double(max(1, x.value.count)))
}

/// The mean squared deviation over `axes` (all when `nil`), divided by n - 1 when `unbiased`.
public func variance(_ x: Variable, alongAxes axes: [Int]? = nil, unbiased: Bool = false, keepingDimensions: Bool = false) -> Variable {
  let d = x - mean(x, alongAxes: axes, keepingDimensions: true)
  let s = sum(d * d, alongAxes: axes, keepingDimensions: keepingDimensions)
  let n = x.value.count / max(1, s.value.count)
  return s * (1 / Double(max(1, unbiased ? n - 1 : n)))
}

/// |x|; the gradient at 0 is 0.
public func abs(_ x: Variable) -> Variable { x * Variable(sign(x.value)) }

/// The larger of corresponding elements (the first where equal).
public func maximum(_ a: Variable, _ b: Variable) -> Variable { select(a.value .>= b.value, a, b) }

/// The smaller of corresponding elements (the first where equal).
public func minimum(_ a: Variable, _ b: Variable) -> Variable { select(a.value .<= b.value, a, b) }

/// min(max(x, 0), 6).
public func relu6(_ x: Variable) -> Variable { clamp(x, min: 0, max: 6) }

/// Swaps two dimensions (the last two by default).
public func transpose(_ x: Variable, _ a: Int = -2, _ b: Int = -1) -> Variable {
  let rank = x.shape.count
  var order = Array(0..<rank)
  order.swapAt(Shape.axis(a, rank: rank, "transpose"), Shape.axis(b, rank: rank, "transpose"))
  return permute(x, order)
}
