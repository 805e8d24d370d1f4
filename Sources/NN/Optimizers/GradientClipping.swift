import Autograd
import TensorModule

/// Scales the gradients of `parameters` together so that their joint L2 norm is at most `maxNorm`
/// (PyTorch's `clip_grad_norm_`), and returns the norm they had. Parameters without a gradient are
/// left out; the norm is accumulated in Float64.
@discardableResult
public func clipGradientNorm(_ parameters: [Variable], maxNorm: Double) -> Double {
  require(maxNorm >= 0 && maxNorm.isFinite, "clipGradientNorm: maxNorm must be finite and not negative, got \(maxNorm)")
  let squares = parameters.compactMap(\.grad).reduce(0.0) { total, g in
    let d = g.converted(to: .float64)
    return total + sum(d * d).scalar
  }
  let norm = squares.squareRoot()
  let scale = maxNorm / (norm + 1e-6)
  if scale < 1 {
    for p in parameters { p.grad = p.grad.map { $0 * scale } }
  }
  return norm
}
