import TensorModule

/// The matrix product of the last two dimensions, batched over (broadcast) leading dimensions.
public func matmul(_ a: Variable, _ b: Variable) -> Variable {
  let x = b.requiresGrad ? a.value : nil, y = a.requiresGrad ? b.value : nil
  return recordOperation("matmul", TensorModule.matmul(a.value, b.value), inputs: [a, b]) { grad in
    [y.map { TensorModule.matmul(grad, $0.transposed()) }, x.map { TensorModule.matmul($0.transposed(), grad) }]
  }
}
