import Autograd
import TensorModule

/// Adam (Kingma and Ba 2015) and AdamW (Loshchilov and Hutter 2019) with PyTorch's semantics:
///
///     Adam:  g = grad + weightDecay · p          AdamW:  p = p · (1 - learningRate · weightDecay)
///     m = β1 · m + (1 - β1) · g,   v = β2 · v + (1 - β2) · g²
///     p = p - learningRate / (1 - β1^t) · m / (sqrt(v) / sqrt(1 - β2^t) + ε)
public final class Adam: Optimizer {
  /// The parameters it updates.
  public let parameters: [Variable]
  /// The learning rate of the next step.
  public var learningRate: Double
  /// The decay rates of the first and second moment estimates.
  public let betas: (Double, Double)
  /// Added to the denominator for stability.
  public let epsilon: Double
  /// The weight decay: an L2 penalty for Adam, a decoupled decay for AdamW.
  public let weightDecay: Double
  /// Whether the weight decay is decoupled (AdamW).
  public let decoupled: Bool
  private var steps = 0
  private var moments: [(Tensor, Tensor)?]

  /// Two moment estimates per parameter.
  public var stateBytes: Int { parameterBytes(copies: 2) }

  /// An optimiser over `parameters`; `decoupled: true` makes it AdamW.
  public init(
    _ parameters: [Variable], learningRate: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999), epsilon: Double = 1e-8,
    weightDecay: Double = 0, decoupled: Bool = false
  ) {
    (self.parameters, self.learningRate, self.betas, self.epsilon, self.weightDecay, self.decoupled) =
      (parameters, learningRate, betas, epsilon, weightDecay, decoupled)
    moments = Array(repeating: nil, count: parameters.count)
  }

  /// One update of every parameter that has a gradient.
  public func step() {
    steps += 1
    let (b1, b2) = betas
    let correction1 = 1 - Foundation.pow(b1, Double(steps)), correction2 = (1 - Foundation.pow(b2, Double(steps))).squareRoot()
    withoutRecording {
      for (i, p) in parameters.enumerated() {
        guard var g = p.grad else { continue }
        if weightDecay != 0 {
          if decoupled { p.value = p.value * (1 - learningRate * weightDecay) } else { g = g + p.value * weightDecay }
        }
        let (m0, v0) = moments[i] ?? (Tensor(zeros: p.shape, dtype: p.dtype), Tensor(zeros: p.shape, dtype: p.dtype))
        let m = m0 * b1 + g * (1 - b1), v = v0 * b2 + g * g * (1 - b2)
        moments[i] = (m, v)
        let denominator = sqrt(v) * (1 / correction2) + epsilon
        p.value = p.value - m / denominator * (learningRate / correction1)
      }
    }
  }

  /// The step count and moment estimates.
  public var state: [String: Tensor] {
    var result: [String: Tensor] = ["steps": Tensor(Double(steps), dtype: .float64)]
    for (i, m) in moments.enumerated() {
      if let (first, second) = m { (result["exp_avg.\(i)"], result["exp_avg_sq.\(i)"]) = (first, second) }
    }
    return result
  }

  /// Restores the step count and moment estimates.
  public func load(state: [String: Tensor]) throws {
    guard let count = state["steps"], count.count == 1, (0...Double(1 << 53)).contains(count.scalar), count.scalar.rounded() == count.scalar else {
      throw StateFileError.corrupt("optimizer state", "'steps' must be one whole number in 0...2^53")
    }
    steps = Int(count.scalar)
    moments = try parameters.indices.map { i in
      guard state["exp_avg.\(i)"] != nil else { return nil }
      return (
        try stateEntry(state, "exp_avg.\(i)", like: parameters[i]),
        try stateEntry(state, "exp_avg_sq.\(i)", like: parameters[i])
      )
    }
  }
}

import Foundation
