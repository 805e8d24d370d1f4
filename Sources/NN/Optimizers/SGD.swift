import Autograd
import TensorModule

/// Stochastic gradient descent with PyTorch's `torch.optim.SGD` semantics exactly:
///
///     g = grad + weightDecay · p
///     b = g on the first step, else momentum · b + (1 - dampening) · g
///     g = g + momentum · b  (Nesterov)   or   g = b  (otherwise, when momentum ≠ 0)
///     p = p - learningRate · g
public final class SGD: Optimizer {
  /// The parameters it updates.
  public let parameters: [Variable]
  /// The learning rate of the next step.
  public var learningRate: Double
  /// The momentum factor (0 for plain SGD).
  public let momentum: Double
  /// The dampening of momentum.
  public let dampening: Double
  /// L2 penalty added to the gradient.
  public let weightDecay: Double
  /// Whether to use Nesterov momentum.
  public let nesterov: Bool
  private var buffers: [Tensor?]

  /// An optimiser over `parameters`.
  /// - Precondition: Nesterov momentum needs a positive momentum and zero dampening.
  public init(
    _ parameters: [Variable], learningRate: Double, momentum: Double = 0, dampening: Double = 0,
    weightDecay: Double = 0, nesterov: Bool = false
  ) {
    require(!nesterov || (momentum > 0 && dampening == 0), "SGD: Nesterov momentum requires a momentum and zero dampening")
    (self.parameters, self.learningRate, self.momentum, self.dampening, self.weightDecay, self.nesterov) =
      (parameters, learningRate, momentum, dampening, weightDecay, nesterov)
    buffers = Array(repeating: nil, count: parameters.count)
  }

  /// One update of every parameter that has a gradient.
  public func step() {
    withoutRecording {
      for (i, p) in parameters.enumerated() {
        guard let g = p.grad else { continue }
        p.updateValue { value in
          sgdStep(
            updating: &value, momentumBuffer: &buffers[i], gradient: g, learningRate: learningRate, momentum: momentum,
            dampening: dampening, weightDecay: weightDecay, nesterov: nesterov)
        }
      }
    }
  }

  /// One buffer per parameter with momentum, none without.
  public var stateBytes: Int { parameterBytes(copies: momentum != 0 ? 1 : 0) }

  /// The momentum buffers, as `momentum.<index>`.
  public var state: [String: Tensor] {
    var result: [String: Tensor] = [:]
    for (i, b) in buffers.enumerated() { if let b { result["momentum.\(i)"] = b } }
    return result
  }

  /// Restores the momentum buffers.
  public func load(state: [String: Tensor]) throws {
    buffers = try parameters.indices.map { i in
      state["momentum.\(i)"] == nil ? nil : try stateEntry(state, "momentum.\(i)", like: parameters[i])
    }
  }
}
