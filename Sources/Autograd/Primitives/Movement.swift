import TensorModule

/// The same elements with a new shape (row-major order); one `-1` is inferred.
public func reshape(_ x: Variable, to shape: [Int]) -> Variable {
  let original = x.shape
  return recordOperation("reshape", reshape(x.value, to: shape), inputs: [x]) { grad in [reshape(grad, to: original)] }
}

/// The dimensions reordered: dimension `i` of the result is dimension `order[i]` of `x`.
public func permute(_ x: Variable, _ order: [Int]) -> Variable {
  var inverse = [Int](repeating: 0, count: order.count)
  for (i, axis) in order.enumerated() where axis >= 0 && axis < order.count { inverse[axis] = i }
  return recordOperation("permute", permute(x.value, order), inputs: [x]) { grad in [permute(grad, inverse)] }
}

/// `x` repeated along dimensions of size 1 (and new leading ones) to reach `shape`.
public func broadcast(_ x: Variable, to shape: [Int]) -> Variable {
  // The gradient has the broadcast shape; the tape sums it back down.
  recordOperation("broadcast", broadcast(x.value, to: shape), inputs: [x]) { grad in [grad] }
}

/// The elements in `range` along `axis`.
public func slice(_ x: Variable, _ range: Range<Int>, alongAxis axis: Int) -> Variable {
  let shape = x.shape
  let a = Shape.axis(axis, rank: shape.count, "slice")
  return recordOperation("slice", slice(x.value, range, alongAxis: a), inputs: [x]) { grad in
    var padding = shape.map { _ in (before: 0, after: 0) }
    padding[a] = (range.lowerBound, shape[a] - range.upperBound)
    return [pad(grad, padding)]
  }
}

/// Consecutive pieces of the given sizes along `axis`, as views.
///
/// One operation with several outputs rather than one slice per piece: the backward pass writes
/// the pieces' gradients into one gradient of `x` (zeros for pieces that received none), instead
/// of padding every piece's gradient to the size of `x`.
public func split(_ x: Variable, sizes: [Int], alongAxis axis: Int) -> [Variable] {
  let shape = x.shape, dtype = x.dtype
  let a = Shape.axis(axis, rank: shape.count, "split")
  let pieces = split(x.value, sizes: sizes, alongAxis: a)
  return recordOperation("split", pieces, inputs: [x]) { gradients in
    let filled = zip(gradients, pieces).map { g, piece in g ?? Tensor(zeros: piece.shape, dtype: dtype) }
    return [concatenate(filled, alongAxis: a)]
  }
}

/// `x` with `padding[i]` elements of `value` added before and after along axis `i`.
public func pad(_ x: Variable, _ padding: [(before: Int, after: Int)], value: Double = 0) -> Variable {
  let shape = x.shape
  return recordOperation("pad", pad(x.value, padding, value: value), inputs: [x]) { grad in
    var g = grad
    for (axis, p) in padding.enumerated() { g = slice(g, p.before..<p.before + shape[axis], alongAxis: axis) }
    return [g]
  }
}

/// The values joined along `axis`.
public func concatenate(_ xs: [Variable], alongAxis axis: Int) -> Variable {
  let sizes = xs.map { $0.shape.isEmpty ? 0 : $0.shape[Shape.axis(axis, rank: $0.shape.count, "concatenate")] }
  let y = concatenate(xs.map(\.value), alongAxis: axis)
  return recordOperation("concatenate", y, inputs: xs) { grad in split(grad, sizes: sizes, alongAxis: axis) }
}
