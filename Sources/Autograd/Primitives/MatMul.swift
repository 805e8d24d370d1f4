import TensorModule

/// The matrix product of the last two dimensions, batched over (broadcast) leading dimensions.
public func matmul(_ a: Variable, _ b: Variable) -> Variable {
  let lhs = b.requiresGrad ? a.value : nil, rhs = a.requiresGrad ? b.value : nil
  let product = TensorModule.matmul(a.value, b.value)
  countMultiplyAccumulates(product.count * a.shape[a.shape.count - 1])
  return recordOperation("matmul", product, inputs: [a, b]) { grad in
    [rhs.map { TensorModule.matmul(grad, $0.transposed()) }, lhs.map { TensorModule.matmul($0.transposed(), grad) }]
  }
}
