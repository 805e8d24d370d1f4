import TensorModule

/// The outcome of ``checkGradients(at:eps:atol:rtol:seed:of:)``.
public struct GradientCheckResult: CustomStringConvertible {
  /// One compared element.
  public struct Element: Sendable {
    /// Which of the checked variables it belongs to.
    public var variable: Int
    /// Its multi-dimensional index.
    public var index: [Int]
    /// The gradient from the backward pass.
    public var analytic: Double
    /// The gradient from central differences.
    public var numeric: Double
    /// |analytic - numeric| divided by the allowed error; above 1 fails.
    public var ratio: Double
  }

  /// The element furthest from its tolerance (`nil` when nothing was compared).
  public let worst: Element?
  /// How many elements exceeded the tolerance.
  public let failures: Int
  /// How many elements were compared.
  public let compared: Int

  /// True when every element is within `atol + rtol * |numeric|`.
  public var passed: Bool { failures == 0 }

  /// A summary naming the worst element.
  public var description: String {
    guard let w = worst else { return "gradient check: nothing to compare" }
    return "gradient check \(passed ? "passed" : "failed"): \(failures) of \(compared) elements out of tolerance; "
      + "worst is variable \(w.variable) at \(w.index): analytic \(w.analytic), numeric \(w.numeric) "
      + "(\(Float(w.ratio)) x the tolerance)"
  }
}

/// Compares the gradients that backward computes for `variables` with central differences.
///
/// The body's output is contracted with a random (seeded) gradient, not summed, so every output
/// element is weighted differently. Before every evaluation the global random generator is reset
/// to its state at the call, so bodies that draw random numbers (dropout) see the same draws.
/// The variables' values, gradients and flags are restored afterwards.
/// - Parameters:
///   - variables: Float64 leaves the body reads (inputs or parameters).
///   - eps: the finite-difference step.
///   - atol: the absolute tolerance.
///   - rtol: the tolerance relative to the numerical gradient.
///   - seed: seeds the random output gradient.
///   - body: the function to check; it must be deterministic.
/// - Precondition: every variable is a Float64 leaf.
public func checkGradients(
  at variables: [Variable], eps: Double = 1e-6, atol: Double = 1e-5, rtol: Double = 1e-3, seed: UInt64 = 0,
  of body: () -> Variable
) -> GradientCheckResult {
  for (i, v) in variables.enumerated() {
    require(v.isLeaf && v.dtype == .float64, "checkGradients: variable \(i) (\(v.shape), \(v.dtype)) must be a Float64 leaf")
  }
  let saved = variables.map { ($0.value, $0.grad, $0.requiresGrad) }
  let generator = RandomGenerator.global
  defer {
    for (v, s) in zip(variables, saved) { (v.value, v.grad, v.requiresGrad) = s }
    RandomGenerator.global = generator
  }
  for v in variables { (v.grad, v.requiresGrad) = (nil, true) }
  let output = body()
  var random = RandomGenerator(seed: seed)
  let cotangent = Tensor(randomNormal: output.shape, dtype: .float64, using: &random)
  output.backward(seed: cotangent)
  let analytic = variables.map { $0.grad?.scalars(as: Double.self) ?? Array(repeating: 0, count: $0.value.count) }

  func objective() -> Double {
    RandomGenerator.global = generator
    return withoutRecording { sum(body().value * cotangent).scalar }
  }
  var worst: GradientCheckResult.Element?
  var failures = 0, compared = 0
  for (k, v) in variables.enumerated() {
    let shape = v.shape, original = v.value.scalars(as: Double.self)
    var values = original
    for i in values.indices {
      values[i] = original[i] + eps
      v.value = Tensor(values, shape: shape)
      let plus = objective()
      values[i] = original[i] - eps
      v.value = Tensor(values, shape: shape)
      let minus = objective()
      values[i] = original[i]
      let numeric = (plus - minus) / (2 * eps)
      let ratio = Swift.abs(analytic[k][i] - numeric) / (atol + rtol * Swift.abs(numeric))
      compared += 1
      if !(ratio <= 1) { failures += 1 }
      if worst == nil || !(ratio <= worst!.ratio) {
        worst = .init(variable: k, index: multiIndex(i, shape), analytic: analytic[k][i], numeric: numeric, ratio: ratio)
      }
    }
    v.value = saved[k].0
  }
  return GradientCheckResult(worst: worst, failures: failures, compared: compared)
}

/// The multi-dimensional index of row-major position `i` in `shape`.
func multiIndex(_ i: Int, _ shape: [Int]) -> [Int] {
  var rest = i, index = [Int](repeating: 0, count: shape.count)
  for axis in shape.indices.reversed() {
    index[axis] = rest % shape[axis]
    rest /= shape[axis]
  }
  return index
}
