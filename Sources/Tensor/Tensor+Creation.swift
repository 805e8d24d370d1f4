/// Creating tensors: constants, ranges, arrays and random values.
extension Tensor {
  /// A tensor of `shape` with every element equal to `value`.
  public init(repeating value: Double, shape: [Int], dtype: DType = .float32) {
    self.init(uninitializedShape: shape, dtype: dtype)
    func fill<T: TensorScalar>(_: T.Type) { base(T.self).update(repeating: T(value), count: count) }
    dtype.dispatch(fill, fill)
  }

  /// A tensor of zeros.
  public init(zeros shape: [Int], dtype: DType = .float32) { self.init(repeating: 0, shape: shape, dtype: dtype) }

  /// A tensor of ones.
  public init(ones shape: [Int], dtype: DType = .float32) { self.init(repeating: 1, shape: shape, dtype: dtype) }

  /// A tensor with one element and no dimensions.
  public init(_ value: Double, dtype: DType = .float32) { self.init(repeating: value, shape: [], dtype: dtype) }

  /// A tensor of `shape` holding `scalars` in row-major order, with the dtype of `T`.
  ///
  /// - Precondition: `scalars.count` equals the product of `shape`.
  public init<T: TensorScalar>(_ scalars: [T], shape: [Int]) {
    require(
      scalars.count == shape.reduce(1, *), "Tensor: \(scalars.count) scalars do not fill shape \(shape)")
    self.init(uninitializedShape: shape, dtype: T.dtype)
    let p = base(T.self)
    scalars.withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: $0.count) }
  }

  /// The values `start, start + step, ...` below `end` (above it for a negative step).
  ///
  /// - Precondition: `step` is not zero.
  public static func arange(_ start: Double, _ end: Double, step: Double = 1, dtype: DType = .float32) -> Tensor {
    require(step != 0, "arange: step must not be zero")
    let n = Swift.max(0, Int(((end - start) / step).rounded(.up)))
    return Tensor((0..<n).map { start + Double($0) * step }, shape: [n]).converted(to: dtype)
  }

  /// Uniform random values in `[lower, upper)` from `generator`.
  public init(
    randomUniform shape: [Int], lower: Double = 0, upper: Double = 1, dtype: DType = .float32,
    using generator: inout RandomGenerator
  ) {
    self.init(uninitializedShape: shape, dtype: dtype)
    let n = count
    func fill<T: TensorScalar>(_: T.Type) {
      let p = base(T.self), lo = T(lower), width = T(upper - lower)
      for i in 0..<n { p[i] = lo + width * generator.nextUnit(T.self) }
    }
    dtype.dispatch(fill, fill)
  }

  /// Normal random values with the given mean and standard deviation from `generator`.
  public init(
    randomNormal shape: [Int], mean: Double = 0, standardDeviation: Double = 1, dtype: DType = .float32,
    using generator: inout RandomGenerator
  ) {
    let n = shape.reduce(1, *)
    var values = [Double]()
    values.reserveCapacity(n + 1)
    while values.count < n {
      let (a, b) = generator.nextNormalPair()
      values.append(mean + standardDeviation * a)
      values.append(mean + standardDeviation * b)
    }
    self = Tensor(Array(values.prefix(n)), shape: shape).converted(to: dtype)
  }

  /// Ones with probability `probability` and zeros otherwise, from `generator`.
  ///
  /// - Precondition: `probability` is in [0, 1].
  public init(
    randomBernoulli shape: [Int], probability: Double, dtype: DType = .float32,
    using generator: inout RandomGenerator
  ) {
    require((0...1).contains(probability), "randomBernoulli: probability \(probability) is not in [0, 1]")
    self.init(uninitializedShape: shape, dtype: dtype)
    let n = count
    func fill<T: TensorScalar>(_: T.Type) {
      let p = base(T.self)
      for i in 0..<n { p[i] = generator.nextUnit(Double.self) < probability ? 1 : 0 }
    }
    dtype.dispatch(fill, fill)
  }

  /// Uniform random values from the global generator (``RandomGenerator/global``).
  public init(randomUniform shape: [Int], lower: Double = 0, upper: Double = 1, dtype: DType = .float32) {
    self.init(randomUniform: shape, lower: lower, upper: upper, dtype: dtype, using: &RandomGenerator.global)
  }

  /// Normal random values from the global generator (``RandomGenerator/global``).
  public init(randomNormal shape: [Int], mean: Double = 0, standardDeviation: Double = 1, dtype: DType = .float32) {
    self.init(randomNormal: shape, mean: mean, standardDeviation: standardDeviation, dtype: dtype, using: &RandomGenerator.global)
  }

  /// Bernoulli random values from the global generator (``RandomGenerator/global``).
  public init(randomBernoulli shape: [Int], probability: Double, dtype: DType = .float32) {
    self.init(randomBernoulli: shape, probability: probability, dtype: dtype, using: &RandomGenerator.global)
  }
}
