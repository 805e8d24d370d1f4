import TensorModule

/// The matrix product of the last two dimensions, batched over (broadcast) leading dimensions.
///
/// The pullback needs only the operands, so in a checkpoint replay the product is computed only if
/// read (optimisation A), and a policy may keep it (rule 10, ``CheckpointPolicy/dotsSaveable``).
public func matmul(_ a: Variable, _ b: Variable) -> Variable {
  let x = a.value, y = b.value
  let shape = matmulOutputShape(x, y)
  let compute = {
    countMultiplyAccumulates(shape.reduce(1, *) * x.shape[x.rank - 1])
    return TensorModule.matmul(x, y)
  }
  let lhs = b.requiresGrad ? x : nil, rhs = a.requiresGrad ? y : nil
  let sharedRight = y.rank == 2 && x.rank > 2
  return recordOperation("matmul", deferring: compute, shape: shape, dtype: x.dtype, inputs: [a, b]) { grad in
    [rhs.map { TensorModule.matmul(grad, $0.transposed()) }, lhs.map { lhs in
      guard sharedRight else { return TensorModule.matmul(lhs.transposed(), grad) }
      // A weight shared by every batch position: one product over all rows, [K, rows] x [rows, N],
      // instead of a product per position summed afterwards.
      let k = lhs.shape[lhs.rank - 1]
      return TensorModule.matmul(lhs.reshaped(to: [-1, k]).transposed(), grad.reshaped(to: [-1, grad.shape[grad.rank - 1]]))
    }]
  }
}
