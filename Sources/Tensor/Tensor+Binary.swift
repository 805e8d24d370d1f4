/// The element-wise functions of two tensors, with NumPy broadcasting.
enum BinaryOperation: String {
  case add = "+", subtract = "-", multiply = "*", divide = "/", maximum, minimum, power
  case less = ".<", lessEqual = ".<=", greater = ".>", greaterEqual = ".>=", equal = ".==", notEqual = ".!="
  case reluGradient, addReLU
}

extension Tensor {
  /// Applies `operation` to corresponding elements of `self` and `other` after broadcasting.
  ///
  /// The result takes the memory order of an operand that has the result's shape and is dense,
  /// so channel-major feature maps stay channel-major.
  func combined(with other: Tensor, _ operation: BinaryOperation) -> Tensor {
    require(
      dtype == other.dtype, "\(operation.rawValue): dtypes differ (\(shape) \(dtype), \(other.shape) \(other.dtype))")
    guard let shape = Shape.broadcast(self.shape, other.shape) else {
      fatalError("\(operation.rawValue): shapes \(self.shape) and \(other.shape) do not broadcast")
    }
    let layoutSource = [self, other].first { $0.shape == shape && $0.isDense }
    let strides = layoutSource.map { Shape.denseStrides(shape, like: $0.strides) } ?? Shape.contiguousStrides(shape)
    let out = Tensor(uninitializedShape: shape, dtype: dtype, strides: strides)
    let order = Shape.memoryOrder(shape, strides)
    let a = Shape.broadcastStrides(self.shape, self.strides, to: shape)
    let b = Shape.broadcastStrides(other.shape, other.strides, to: shape)
    let loop = StridedLoop(shape: order.map { shape[$0] }, strides: [a, b, strides].map { s in order.map { s[$0] } })
    func kernel<T: TensorScalar>(_: T.Type) { binaryKernel(operation, loop, base(T.self), other.base(T.self), out.base(T.self)) }
    dtype.dispatch(kernel, kernel)
    return out
  }
}

extension Tensor {
  /// `a = a + b`, with `b` broadcast to the shape of `a`. When `a` alone owns its storage (no other
  /// tensor shares it and it is not a view into a larger buffer) the sum is written over `a`, so
  /// accumulating gradients neither allocates nor fills a third buffer; otherwise `a` becomes the
  /// new tensor `a + b`, and tensors that shared its storage keep their values. The sums are those
  /// of `a + b`, bit for bit.
  ///
  /// - Precondition: the dtypes match and `b` broadcasts to the shape of `a`.
  public static func += (a: inout Tensor, b: Tensor) {
    guard a.dtype == b.dtype, Shape.broadcast(a.shape, b.shape) == a.shape, a.isDense, a.ownsItsStorage() else {
      let sum = a + b
      require(sum.shape == a.shape, "+=: \(b.shape) does not broadcast to the shape \(a.shape) it is added to")
      a = sum
      return
    }
    let order = Shape.memoryOrder(a.shape, a.strides)
    let bStrides = Shape.broadcastStrides(b.shape, b.strides, to: a.shape)
    let loop = StridedLoop(shape: order.map { a.shape[$0] }, strides: [a.strides, bStrides, a.strides].map { s in order.map { s[$0] } })
    func kernel<T: TensorScalar>(_: T.Type) { binaryKernel(.add, loop, a.base(T.self), b.base(T.self), a.base(T.self)) }
    a.dtype.dispatch(kernel, kernel)
  }
}

/// One element-wise function of two scalars, as a type: a kernel specialised for it inlines the
/// function into its loops, which then vectorise (a closure argument is called per element).
private protocol BinaryFunction {
  static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T
}

private enum Add: BinaryFunction { @inline(__always) static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { a + b } }
private enum Subtract: BinaryFunction { @inline(__always) static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { a - b } }
private enum Multiply: BinaryFunction { @inline(__always) static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { a * b } }
private enum Divide: BinaryFunction { @inline(__always) static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { a / b } }
private enum Maximum: BinaryFunction { @inline(__always) static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { a >= b ? a : b } }
private enum Minimum: BinaryFunction { @inline(__always) static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { a <= b ? a : b } }
private enum Power: BinaryFunction { @inline(__always) static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { T.pow(a, b) } }
private enum Less: BinaryFunction { @inline(__always) static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { a < b ? 1 : 0 } }
private enum LessEqual: BinaryFunction { @inline(__always) static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { a <= b ? 1 : 0 } }
private enum Greater: BinaryFunction { @inline(__always) static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { a > b ? 1 : 0 } }
private enum GreaterEqual: BinaryFunction { @inline(__always) static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { a >= b ? 1 : 0 } }
private enum Equal: BinaryFunction { @inline(__always) static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { a == b ? 1 : 0 } }
private enum NotEqual: BinaryFunction { @inline(__always) static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { a != b ? 1 : 0 } }
private enum ReLUGradient: BinaryFunction { @inline(__always) static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { b > 0 ? a : 0 } }
private enum AddReLU: BinaryFunction {
  @inline(__always) static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { let s = a + b; return s > 0 ? s : 0 }
}

private func binaryKernel<T: TensorScalar>(
  _ operation: BinaryOperation, _ loop: StridedLoop,
  _ a: UnsafeMutablePointer<T>, _ b: UnsafeMutablePointer<T>, _ c: UnsafeMutablePointer<T>
) {
  switch operation {
  case .add: binaryRows(Add.self, loop, a, b, c)
  case .subtract: binaryRows(Subtract.self, loop, a, b, c)
  case .multiply: binaryRows(Multiply.self, loop, a, b, c)
  case .divide: binaryRows(Divide.self, loop, a, b, c)
  case .maximum: binaryRows(Maximum.self, loop, a, b, c)
  case .minimum: binaryRows(Minimum.self, loop, a, b, c)
  case .power: binaryRows(Power.self, loop, a, b, c)
  case .less: binaryRows(Less.self, loop, a, b, c)
  case .lessEqual: binaryRows(LessEqual.self, loop, a, b, c)
  case .greater: binaryRows(Greater.self, loop, a, b, c)
  case .greaterEqual: binaryRows(GreaterEqual.self, loop, a, b, c)
  case .equal: binaryRows(Equal.self, loop, a, b, c)
  case .notEqual: binaryRows(NotEqual.self, loop, a, b, c)
  case .reluGradient: binaryRows(ReLUGradient.self, loop, a, b, c)
  case .addReLU: binaryRows(AddReLU.self, loop, a, b, c)
  }
}

/// `c = F(a, b)` over the loop's rows, split across threads; unit-stride and scalar-operand rows
/// get loops of their own.
private func binaryRows<F: BinaryFunction, T: TensorScalar>(
  _: F.Type, _ loop: StridedLoop, _ a: UnsafeMutablePointer<T>, _ b: UnsafeMutablePointer<T>, _ c: UnsafeMutablePointer<T>
) {
  let n = loop.rowLength, sa = loop.rowStride(0), sb = loop.rowStride(1), sc = loop.rowStride(2)
  if loop.shape.count == 1 && sa == 1 && sb == 1 && sc == 1 {
    Parallel.forRanges(n, costPerItem: 2) { r in for i in r { c[i] = F.apply(a[i], b[i]) } }
    return
  }
  Parallel.forRanges(loop.rowCount, costPerItem: n) { rows in
    loop.forEachRow(in: rows) { o in
      let x = a + o[0], y = b + o[1], z = c + o[2]
      switch (sa, sb, sc) {
      case (1, 1, 1): for i in 0..<n { z[i] = F.apply(x[i], y[i]) }
      case (1, 0, 1): let v = y[0]; for i in 0..<n { z[i] = F.apply(x[i], v) }
      case (0, 1, 1): let v = x[0]; for i in 0..<n { z[i] = F.apply(v, y[i]) }
      default: for i in 0..<n { z[i * sc] = F.apply(x[i * sa], y[i * sb]) }
      }
    }
  }
}

extension Tensor {
  /// Element-wise sum with broadcasting.
  public static func + (a: Tensor, b: Tensor) -> Tensor { a.combined(with: b, .add) }
  /// Element-wise difference with broadcasting.
  public static func - (a: Tensor, b: Tensor) -> Tensor { a.combined(with: b, .subtract) }
  /// Element-wise product with broadcasting.
  public static func * (a: Tensor, b: Tensor) -> Tensor { a.combined(with: b, .multiply) }
  /// Element-wise quotient with broadcasting.
  public static func / (a: Tensor, b: Tensor) -> Tensor { a.combined(with: b, .divide) }
  /// `a + b` for a scalar `b`.
  public static func + (a: Tensor, b: Double) -> Tensor { affine(a, scale: 1, shift: b) }
  /// `a * b` for a scalar `b`.
  public static func * (a: Tensor, b: Double) -> Tensor { affine(a, scale: b, shift: 0) }
  /// `a - b` for a scalar `b`.
  public static func - (a: Tensor, b: Double) -> Tensor { affine(a, scale: 1, shift: -b) }
  /// `a / b` for a scalar `b` (a division of every element, rounded as `a / b` is).
  public static func / (a: Tensor, b: Double) -> Tensor { a / Tensor(b, dtype: a.dtype) }
  /// `a + b` for a scalar `a`.
  public static func + (a: Double, b: Tensor) -> Tensor { affine(b, scale: 1, shift: a) }
  /// `a - b` for a scalar `a`.
  public static func - (a: Double, b: Tensor) -> Tensor { affine(b, scale: -1, shift: a) }
  /// `a * b` for a scalar `a`.
  public static func * (a: Double, b: Tensor) -> Tensor { affine(b, scale: a, shift: 0) }
  /// `a / b` for a scalar `a`.
  public static func / (a: Double, b: Tensor) -> Tensor { Tensor(a, dtype: b.dtype) / b }
  /// 1 where `a < b`, else 0 (broadcasting).
  public static func .< (a: Tensor, b: Tensor) -> Tensor { a.combined(with: b, .less) }
  /// 1 where `a <= b`, else 0 (broadcasting).
  public static func .<= (a: Tensor, b: Tensor) -> Tensor { a.combined(with: b, .lessEqual) }
  /// 1 where `a > b`, else 0 (broadcasting).
  public static func .> (a: Tensor, b: Tensor) -> Tensor { a.combined(with: b, .greater) }
  /// 1 where `a >= b`, else 0 (broadcasting).
  public static func .>= (a: Tensor, b: Tensor) -> Tensor { a.combined(with: b, .greaterEqual) }
  /// 1 where `a == b`, else 0 (broadcasting).
  public static func .== (a: Tensor, b: Tensor) -> Tensor { a.combined(with: b, .equal) }
  /// 1 where `a != b`, else 0 (broadcasting).
  public static func .!= (a: Tensor, b: Tensor) -> Tensor { a.combined(with: b, .notEqual) }
}

/// `relu(a + b)` in one pass (with broadcasting), bit for bit: a residual connection's sum and
/// activation without the sum as a tensor of its own.
public func addReLU(_ a: Tensor, _ b: Tensor) -> Tensor { a.combined(with: b, .addReLU) }

/// The gradient of ReLU in one pass: `gradient` where `output` is positive, 0 elsewhere.
public func reluBackward(_ gradient: Tensor, output: Tensor) -> Tensor { gradient.combined(with: output, .reluGradient) }

/// The larger of corresponding elements (the first where equal), with broadcasting.
public func maximum(_ a: Tensor, _ b: Tensor) -> Tensor { a.combined(with: b, .maximum) }
/// The smaller of corresponding elements (the first where equal), with broadcasting.
public func minimum(_ a: Tensor, _ b: Tensor) -> Tensor { a.combined(with: b, .minimum) }
/// a^b, element-wise with broadcasting.
public func pow(_ a: Tensor, _ b: Tensor) -> Tensor { a.combined(with: b, .power) }

/// Elements of `a` where `condition` is non-zero and of `b` elsewhere (all three broadcast).
///
/// - Precondition: the three shapes broadcast together and `a` and `b` share a dtype.
public func select(_ condition: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
  let shapes = [condition.shape, a.shape, b.shape]
  guard a.dtype == b.dtype, let ab = Shape.broadcast(a.shape, b.shape),
    let shape = Shape.broadcast(condition.shape, ab)
  else { fatalError("select: shapes \(shapes) (condition, a, b) do not broadcast or dtypes differ") }
  let mask = condition.converted(to: a.dtype)
  // The result takes the memory order of a dense operand of its shape, as `combined` does, so that
  // channel-major maps stay channel-major and every operand is read along its rows.
  let layoutSource = [a, b, mask].first { $0.shape == shape && $0.isDense }
  let outStrides = layoutSource.map { Shape.denseStrides(shape, like: $0.strides) } ?? Shape.contiguousStrides(shape)
  let out = Tensor(uninitializedShape: shape, dtype: a.dtype, strides: outStrides)
  let order = Shape.memoryOrder(shape, outStrides)
  let strides = [mask, a, b].map { Shape.broadcastStrides($0.shape, $0.strides, to: shape) } + [outStrides]
  let loop = StridedLoop(shape: order.map { shape[$0] }, strides: strides.map { s in order.map { s[$0] } })
  func kernel<T: TensorScalar>(_: T.Type) {
    let m = mask.base(T.self), x = a.base(T.self), y = b.base(T.self), z = out.base(T.self)
    let s = (0..<4).map { loop.rowStride($0) }, n = loop.rowLength, unit = s.allSatisfy { $0 == 1 }
    Parallel.forRanges(loop.rowCount, costPerItem: n) { rows in
      loop.forEachRow(in: rows) { o in
        if unit {
          for i in 0..<n { z[o[3] + i] = m[o[0] + i] != 0 ? x[o[1] + i] : y[o[2] + i] }
        } else {
          for i in 0..<n { z[o[3] + i * s[3]] = m[o[0] + i * s[0]] != 0 ? x[o[1] + i * s[1]] : y[o[2] + i * s[2]] }
        }
      }
    }
  }
  a.dtype.dispatch(kernel, kernel)
  return out
}
