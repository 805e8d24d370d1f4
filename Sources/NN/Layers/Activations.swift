import Autograd

/// max(x, 0).
public final class ReLU: Layer {
  /// A ReLU.
  public init() {}
  /// max(input, 0).
  public func callAsFunction(_ input: Variable) -> Variable { relu(input) }
}

/// min(max(x, 0), 6).
public final class ReLU6: Layer {
  /// A ReLU6.
  public init() {}
  /// min(max(input, 0), 6).
  public func callAsFunction(_ input: Variable) -> Variable { relu6(input) }
}

/// 1 / (1 + e^-x).
public final class Sigmoid: Layer {
  /// A sigmoid.
  public init() {}
  /// The logistic function of `input`.
  public func callAsFunction(_ input: Variable) -> Variable { sigmoid(input) }
}

/// Passes its input through unchanged.
public final class Identity: Layer {
  /// An identity.
  public init() {}
  /// `input`.
  public func callAsFunction(_ input: Variable) -> Variable { input }
}

/// Reshapes [N, ...] to [N, product of the rest].
public final class Flatten: Layer {
  /// A flatten.
  public init() {}
  /// `input` as [N, -1].
  public func callAsFunction(_ input: Variable) -> Variable { reshape(input, to: [input.shape.first ?? 1, -1]) }
}
