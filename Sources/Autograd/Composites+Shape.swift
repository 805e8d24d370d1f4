import TensorModule

// Shape operations and reductions built from the primitives; none has a pullback of its own.

/// `x` with a dimension of size 1 inserted at `axis` (0...rank; negative counts from the end of
/// the result).
public func unsqueeze(_ x: Variable, axis: Int) -> Variable {
  var shape = x.shape
  shape.insert(1, at: Shape.axis(axis, rank: shape.count + 1, "unsqueeze"))
  return reshape(x, to: shape)
}

/// `x` without its dimension `axis`, which must have size 1.
public func squeeze(_ x: Variable, axis: Int) -> Variable {
  var shape = x.shape
  let a = Shape.axis(axis, rank: shape.count, "squeeze")
  require(shape[a] == 1, "squeeze: dimension \(axis) of \(x.shape) has size \(shape[a]), not 1")
  shape.remove(at: a)
  return reshape(x, to: shape)
}

/// `x` with dimensions `start...end` merged into one (PyTorch's `flatten(start_dim, end_dim)`).
public func flatten(_ x: Variable, from start: Int = 0, to end: Int = -1) -> Variable {
  let shape = x.shape
  guard !shape.isEmpty else { return reshape(x, to: [1]) }
  let (s, e) = (Shape.axis(start, rank: shape.count, "flatten"), Shape.axis(end, rank: shape.count, "flatten"))
  require(s <= e, "flatten: start \(start) comes after end \(end) for shape \(shape)")
  return reshape(x, to: Array(shape[..<s]) + [shape[s...e].reduce(1, *)] + Array(shape[(e + 1)...]))
}

/// The tensors, all of one shape, stacked along a new dimension `axis`.
public func stack(_ xs: [Variable], alongAxis axis: Int) -> Variable {
  require(!xs.isEmpty, "stack: no tensors")
  require(xs.allSatisfy { $0.shape == xs[0].shape }, "stack: shapes differ: \(xs.map(\.shape))")
  let a = Shape.axis(axis, rank: xs[0].shape.count + 1, "stack")
  return concatenate(xs.map { unsqueeze($0, axis: a) }, alongAxis: a)
}

/// The minimum over `axes` (all when `nil`); the gradient goes to the first minimal element.
public func min(_ x: Variable, alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> Variable {
  -max(-x, alongAxes: axes, keepingDimensions: keepingDimensions)
}

/// log(Σ e^x) over `axes` (all when `nil`), shifted by the (constant) maximum for stability.
public func logSumExp(_ x: Variable, alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> Variable {
  let peak = max(x.value, alongAxes: axes, keepingDimensions: true)
  let finitePeak = select(TensorModule.abs(peak) .< Tensor(Double.infinity, dtype: peak.dtype), peak, Tensor(0, dtype: peak.dtype))
  let total = sum(exp(x - Variable(finitePeak)), alongAxes: axes, keepingDimensions: keepingDimensions)
  return log(total) + Variable(reshape(finitePeak, to: total.shape))
}
