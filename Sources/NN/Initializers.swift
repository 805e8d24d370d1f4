import TensorModule

/// Weight initialisation schemes (He et al. 2015, Glorot and Bengio 2010, PyTorch's defaults).
///
/// Fans follow PyTorch: for a weight [out, in, kh, kw] fan-in is in x kh x kw and fan-out is
/// out x kh x kw. Random values come from `RandomGenerator/global`.
public enum Initializer: Sendable {
  /// Which fan a He initialisation scales by.
  public enum Fan: Sendable {
    /// Preserves the variance of activations in the forward pass.
    case fanIn
    /// Preserves the variance of gradients in the backward pass.
    case fanOut
  }

  /// Normal(0, sqrt(2 / fan)), for layers followed by ReLU.
  case kaimingNormal(Fan)
  /// Uniform(±sqrt(6 / fan)).
  case kaimingUniform(Fan)
  /// Normal(0, sqrt(2 / (fanIn + fanOut))).
  case xavierNormal
  /// Uniform(±sqrt(6 / (fanIn + fanOut))).
  case xavierUniform
  /// Uniform(±bound).
  case uniform(bound: Double)
  /// Normal(0, standardDeviation).
  case normal(standardDeviation: Double)
  /// Every element equal to the value.
  case constant(Double)
  /// PyTorch's default for convolution and linear weights and biases: Uniform(±1 / sqrt(fanIn)).
  case pytorchDefault(fanIn: Int)

  /// A tensor of `shape` initialised by this scheme.
  public func tensor(_ shape: [Int], dtype: DType = .float32) -> Tensor {
    let receptive = shape.dropFirst(2).reduce(1, *)
    let fanIn = shape.count > 1 ? shape[1] * receptive : shape.first ?? 1
    let fanOut = (shape.first ?? 1) * receptive
    func fan(_ f: Fan) -> Double { Double(max(1, f == .fanIn ? fanIn : fanOut)) }
    switch self {
    case .kaimingNormal(let f): return Tensor(randomNormal: shape, standardDeviation: (2 / fan(f)).squareRoot(), dtype: dtype)
    case .kaimingUniform(let f):
      let bound = (6 / fan(f)).squareRoot()
      return Tensor(randomUniform: shape, lower: -bound, upper: bound, dtype: dtype)
    case .xavierNormal:
      return Tensor(randomNormal: shape, standardDeviation: (2 / Double(max(1, fanIn + fanOut))).squareRoot(), dtype: dtype)
    case .xavierUniform:
      let bound = (6 / Double(max(1, fanIn + fanOut))).squareRoot()
      return Tensor(randomUniform: shape, lower: -bound, upper: bound, dtype: dtype)
    case .normal(let deviation): return Tensor(randomNormal: shape, standardDeviation: deviation, dtype: dtype)
    case .uniform(let bound): return Tensor(randomUniform: shape, lower: -bound, upper: bound, dtype: dtype)
    case .constant(let value): return Tensor(repeating: value, shape: shape, dtype: dtype)
    case .pytorchDefault(let fanIn):
      let bound = 1 / Double(max(1, fanIn)).squareRoot()
      return Tensor(randomUniform: shape, lower: -bound, upper: bound, dtype: dtype)
    }
  }
}
