import Autograd
import TensorModule

/// Updates parameters from their gradients; the learning rate is set by a schedule each step.
public protocol Optimizer: AnyObject {
  /// The learning rate of the next step.
  var learningRate: Double { get set }
  /// The parameters it updates, in a fixed order.
  var parameters: [Variable] { get }
  /// Updates every parameter that has a gradient.
  func step()
  /// The optimiser's state (momentum buffers, step counts) as named tensors, for resuming.
  var state: [String: Tensor] { get }
  /// Restores state from ``state``.
  ///
  /// - Throws: ``StateFileError`` when an entry is missing or has the wrong shape.
  func load(state: [String: Tensor]) throws
  /// The bytes of state it holds once it has stepped (momentum buffers, moment estimates): memory a
  /// training step needs besides the model's, which a checkpoint budget counts.
  var stateBytes: Int { get }
}

extension Optimizer {
  /// The bytes of `copies` tensors shaped like each parameter.
  func parameterBytes(copies: Int) -> Int {
    copies * parameters.reduce(0) { $0 + $1.value.count * $1.value.dtype.byteCount }
  }

  /// Clears every parameter's gradient.
  public func zeroGradients() {
    for p in parameters { p.grad = nil }
  }
}

/// Reads `key` from an optimiser state, checking its shape and values and converting it to the
/// parameter's dtype (a file of either precision resumes a run of either).
func stateEntry(_ state: [String: Tensor], _ key: String, like parameter: Variable) throws -> Tensor {
  guard let t = state[key] else { throw StateFileError.missingKeys([key]) }
  guard t.shape == parameter.shape else { throw StateFileError.shapeMismatch([(key, expected: parameter.shape, found: t.shape)]) }
  let converted = t.converted(to: parameter.dtype)
  guard converted.isFinite else { throw StateFileError.corrupt("optimizer state", "'\(key)' holds values that are not finite") }
  return converted
}
