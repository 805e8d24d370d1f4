import TensorModule

/// The slices of `x` at `indices` along `axis` (the result replaces dimension `axis` by the
/// indices' shape); the pullback adds each slice's gradient back at its index.
public func indexSelect(_ x: Variable, _ indices: IndexTensor, alongAxis axis: Int) -> Variable {
  let shape = x.shape
  return recordOperation("indexSelect", indexSelect(x.value, indices, alongAxis: axis), inputs: [x]) { grad in
    [indexAdd(grad, indices, alongAxis: axis, into: shape)]
  }
}

/// PyTorch's `gather` along `axis`; the pullback scatters the gradient back, adding where indices repeat.
public func gather(_ x: Variable, _ indices: IndexTensor, alongAxis axis: Int) -> Variable {
  let shape = x.shape
  return recordOperation("gather", gather(x.value, indices, alongAxis: axis), inputs: [x]) { grad in
    [scatterAdd(grad, indices, alongAxis: axis, into: shape)]
  }
}

/// The rows of `weight` [vocabulary, features] at `indices`: [indices' shape..., features].
public func embedding(_ indices: IndexTensor, _ weight: Variable) -> Variable {
  require(weight.shape.count == 2, "embedding: weight must be [vocabulary, features], got \(weight.shape)")
  return indexSelect(weight, indices, alongAxis: 0)
}
