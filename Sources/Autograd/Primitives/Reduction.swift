import TensorModule

/// The sum over `axes` (all when `nil`).
public func sum(_ x: Variable, alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> Variable {
  let shape = x.shape
  let reduced = Set((axes ?? Array(shape.indices)).map { Shape.axis($0, rank: shape.count, "sum") })
  let kept = shape.indices.map { reduced.contains($0) ? 1 : shape[$0] }
  let y = sum(x.value, alongAxes: axes, keepingDimensions: keepingDimensions)
  // The gradient is a broadcast view, not a copy: where another gradient of `x` is already there
  // (squeeze-and-excitation's pooled map, a LayerNorm's mean) the tape adds it in one pass, and
  // where none is, the tape writes it out (`accumulate`).
  return recordOperation("sum", y, inputs: [x]) { grad in [broadcast(reshape(grad, to: kept), to: shape)] }
}

/// The maximum over `axes` (all when `nil`); the gradient goes to the first maximal element.
public func max(_ x: Variable, alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> Variable {
  let shape = x.shape, rank = x.value.rank
  let reduced = Set((axes ?? Array(0..<rank)).map { Shape.axis($0, rank: rank, "max") }).sorted()
  let kept = (0..<rank).filter { !reduced.contains($0) }
  let (y, indices) = maxWithIndices(x.value, alongAxes: axes, keepingDimensions: keepingDimensions)
  return recordOperation("max", y, inputs: [x]) { grad in
    // Scatter into [kept..., reduced...] row-major, then put the axes back in place.
    let inner = reduced.reduce(1) { $0 * shape[$1] }
    let g = grad.scalars(as: Double.self)
    var rows = [Double](repeating: 0, count: shape.reduce(1, *))
    for (o, i) in indices.enumerated() { rows[o * inner + i] = g[o] }
    let order = kept + reduced
    var inverse = [Int](repeating: 0, count: rank)
    for (i, axis) in order.enumerated() { inverse[axis] = i }
    let scattered = Tensor(rows, shape: order.map { shape[$0] }).converted(to: grad.dtype)
    return [permute(scattered, inverse)]
  }
}
