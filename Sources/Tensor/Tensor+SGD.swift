/// The SGD update as one pass over a parameter's elements.
///
/// Written as tensor expressions, the update allocates and fills six tensors of the parameter's size
/// a step (the decayed gradient, two momentum products and their sum, the Nesterov gradient, its
/// product with the rate) and reads the parameter's memory about a dozen times; for a model of tens
/// of millions of parameters that traffic is a visible part of the step. Here each element is read
/// once and its new value and momentum written once, with the same operations in the same order as
/// the expressions, so the results are the same bits.

/// One step of `torch.optim.SGD` for one parameter:
///
///     g = gradient + weightDecay · value
///     b = g on the first step (no buffer yet), else momentum · b + (1 - dampening) · g
///     g = g + momentum · b  (Nesterov)   or   g = b  (otherwise, when momentum ≠ 0)
///     value = value - learningRate · g
///
/// - Parameters:
///   - value: the parameter.
///   - gradient: its gradient, of the same shape.
///   - momentumBuffer: the momentum buffer of the previous step, nil on the first step or without momentum.
///   - learningRate: the step size.
///   - momentum: the momentum factor, 0 for none.
///   - dampening: the dampening of the gradient's contribution to the momentum buffer.
///   - weightDecay: the L2 penalty's factor.
///   - nesterov: whether the step uses Nesterov momentum.
/// - Returns: the new value (dense, in `value`'s memory order) and the new momentum buffer (nil
///   when `momentum` is 0).
public func sgdStep(
  _ value: Tensor, gradient: Tensor, momentumBuffer: Tensor?, learningRate: Double, momentum: Double, dampening: Double,
  weightDecay: Double, nesterov: Bool
) -> (value: Tensor, momentumBuffer: Tensor?) {
  checkSGDOperands(value, gradient, momentumBuffer)
  let p = value.isDense ? value : value.contiguous()
  let newValue = Tensor(uninitializedShape: p.shape, dtype: p.dtype, strides: p.strides)
  let newBuffer = momentum != 0 ? Tensor(uninitializedShape: p.shape, dtype: p.dtype, strides: p.strides) : nil
  sgdKernel(p, gradient, momentumBuffer, into: newValue, newBuffer, learningRate, momentum, dampening, weightDecay, nesterov)
  return (newValue, newBuffer)
}

/// ``sgdStep(_:gradient:momentumBuffer:learningRate:momentum:dampening:weightDecay:nesterov:)`` in
/// place: the new value written over `value` and the new buffer over `momentumBuffer` where nothing
/// else holds their memory (an optimiser's parameters and buffers between steps), so that a step
/// writes into lines it has just read rather than into fresh buffers the size of the model; into
/// new tensors otherwise. The same bits either way: each element is read before it is written.
package func sgdStep(
  updating value: inout Tensor, momentumBuffer: inout Tensor?, gradient: Tensor, learningRate: Double, momentum: Double,
  dampening: Double, weightDecay: Double, nesterov: Bool
) {
  checkSGDOperands(value, gradient, momentumBuffer)
  var ownsBuffer = true
  if var buffer = momentumBuffer {
    momentumBuffer = nil  // so that `buffer` is the one reference the caller's holds
    ownsBuffer = buffer.strides == value.strides && buffer.ownsItsStorage()
    momentumBuffer = buffer
  }
  guard value.isDense, value.ownsItsStorage(), momentum != 0 || momentumBuffer == nil, ownsBuffer else {
    (value, momentumBuffer) = sgdStep(
      value, gradient: gradient, momentumBuffer: momentumBuffer, learningRate: learningRate, momentum: momentum,
      dampening: dampening, weightDecay: weightDecay, nesterov: nesterov)
    return
  }
  let newBuffer = momentum == 0 ? nil : momentumBuffer ?? Tensor(uninitializedShape: value.shape, dtype: value.dtype, strides: value.strides)
  sgdKernel(value, gradient, momentumBuffer, into: value, newBuffer, learningRate, momentum, dampening, weightDecay, nesterov)
  momentumBuffer = newBuffer
}

private func checkSGDOperands(_ value: Tensor, _ gradient: Tensor, _ momentumBuffer: Tensor?) {
  require(
    gradient.shape == value.shape && gradient.dtype == value.dtype && momentumBuffer.map { $0.shape == value.shape && $0.dtype == value.dtype } ?? true,
    "sgdStep: value \(value.shape) \(value.dtype), gradient \(gradient.shape) \(gradient.dtype), momentum buffer \(momentumBuffer.map { "\($0.shape) \($0.dtype)" } ?? "none")")
}

/// The update of dense `p` into `newValue` and `newBuffer` (laid out like `p`; either may be `p`'s
/// or `buffer`'s own memory: element i is read before it is written).
private func sgdKernel(
  _ p: Tensor, _ gradient: Tensor, _ buffer: Tensor?, into newValue: Tensor, _ newBuffer: Tensor?, _ learningRate: Double,
  _ momentum: Double, _ dampening: Double, _ weightDecay: Double, _ nesterov: Bool
) {
  let g = gradient.laidOut(like: p.strides), b = buffer?.laidOut(like: p.strides)
  func kernel<T: TensorScalar>(_: T.Type) {
    let pp = p.base(T.self), pg = g.base(T.self), pb = b?.base(T.self), out = newValue.base(T.self), outB = newBuffer?.base(T.self)
    let (rate, m, keep, decay) = (T(learningRate), T(momentum), T(1 - dampening), T(weightDecay))
    // Each product is written as the tensor expressions compute it, `scale * x + 0` (Tensor * Double
    // is an affine map), so that signed zeros come out as they did.
    Parallel.forRanges(p.count, costPerItem: 8) { range in
      for i in range {
        var d = pg[i]
        if weightDecay != 0 { d = d + (decay * pp[i] + 0) }
        if let outB {
          let buffer = pb.map { (m * $0[i] + 0) + (keep * d + 0) } ?? d
          outB[i] = buffer
          d = nesterov ? d + (m * buffer + 0) : buffer
        }
        out[i] = pp[i] - (rate * d + 0)
      }
    }
  }
  p.dtype.dispatch(kernel, kernel)
}
