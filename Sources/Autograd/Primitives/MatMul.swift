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
    [rhs.map { TensorModule.matmul(grad, transpose($0)) }, lhs.map { lhs in
      sharedRight ? productOverRows(lhs, grad) : TensorModule.matmul(transpose(lhs), grad)
    }]
  }
}

/// `x` [..., in] times `weight` [out, in] transposed, plus `bias` [out]: PyTorch's `linear`.
///
/// A primitive rather than `matmul` then `+`: the bias is accumulated into the product's own
/// GEMM, where the addition read and wrote the whole output once more; its gradient is a sum
/// over rows. The input's gradient is g · weight, the weight's gᵀ · x over all rows in one
/// product. Like `matmul`, its pullback needs only the operands, so in a checkpoint replay the
/// output is computed only if read (optimisation A).
public func linear(_ x: Variable, weight: Variable, bias: Variable? = nil) -> Variable {
  let input = x.value, w = weight.value, b = bias?.value
  require(
    input.rank >= 1 && w.rank == 2 && input.shape[input.rank - 1] == w.shape[1],
    "linear: input \(input.shape) does not fit weight \(w.shape) as [..., in] and [out, in]")
  let shape = Array(input.shape.dropLast()) + [w.shape[0]]
  let compute = {
    countMultiplyAccumulates(shape.reduce(1, *) * w.shape[1])
    return TensorModule.linear(input, weight: w, bias: b)
  }
  let keptInput = weight.requiresGrad ? input : nil, keptWeight = x.requiresGrad ? w : nil
  let hasBias = bias != nil, inputShape = input.shape
  return recordOperation("linear", deferring: compute, shape: shape, dtype: input.dtype, inputs: [x, weight] + (bias.map { [$0] } ?? [])) { grad in
    let rows = reshape(grad, to: [-1, grad.shape[grad.rank - 1]])
    let dx = keptWeight.map { reshape(TensorModule.matmul(rows, $0), to: inputShape) }
    return [dx, keptInput.map { productOverRows(rows, $0) }] + (hasBias ? [sum(rows, alongAxes: [0])] : [])
  }
}

/// aᵀ b summed over every leading position of a [..., K] and b [..., N]: the gradient of a weight
/// shared by every position, as one [K, rows] x [rows, N] product rather than a product per
/// position summed afterwards.
private func productOverRows(_ a: Tensor, _ b: Tensor) -> Tensor {
  TensorModule.matmul(transpose(reshape(a, to: [-1, a.shape[a.rank - 1]])), reshape(b, to: [-1, b.shape[b.rank - 1]]))
}
