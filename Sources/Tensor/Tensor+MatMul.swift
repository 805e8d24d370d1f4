/// Matrix products through OpenBLAS.

/// The shape of ``matmul(_:_:)``'s result, the broadcast batch dimensions then [M, N].
///
/// - Precondition: as for ``matmul(_:_:)``.
public func matmulOutputShape(_ a: Tensor, _ b: Tensor) -> [Int] {
  require(
    a.rank >= 2 && b.rank >= 2 && a.dtype == b.dtype && a.shape[a.rank - 1] == b.shape[b.rank - 2],
    "matmul: shapes \(a.shape) (\(a.dtype)) and \(b.shape) (\(b.dtype)) do not fit [..., M, K] x [..., K, N]")
  guard let batch = Shape.broadcast(Array(a.shape.dropLast(2)), Array(b.shape.dropLast(2))) else {
    fatalError("matmul: batch dimensions of \(a.shape) and \(b.shape) do not broadcast")
  }
  return batch + [a.shape[a.rank - 2], b.shape[b.rank - 1]]
}

/// The matrix product of the last two dimensions of `a` [..., M, K] and `b` [..., K, N], batched
/// over the leading dimensions (which broadcast).
///
/// Transposed views (from ``transpose(_:_:_:)``) are passed to BLAS as transposed operands
/// without a copy; rank-2 contiguous operands go straight to one `gemm` call.
/// - Precondition: both have rank of at least 2, the same dtype, and `a`'s last dimension equals
///   `b`'s second-to-last.
public func matmul(_ a: Tensor, _ b: Tensor) -> Tensor {
  let shape = matmulOutputShape(a, b)
  let batch = Array(shape.dropLast(2)), m = shape[shape.count - 2], k = a.shape[a.rank - 1], n = shape[shape.count - 1]
  let count = batch.reduce(1, *)
  if b.rank == 2 && a.rank > 2, let rows = Shape.viewStrides(a.shape, a.strides, as: [count * m, k]), rows[1] == 1 || k == 1 {
    // [..., M, K] x [K, N] whose batch and M dimensions step as one: a single product with
    // count · M rows, one large GEMM instead of `count` small ones.
    return reshape(matmul(reshape(a, to: [count * m, k]), b), to: shape)
  }
  let lhs = MatrixOperand(a), rhs = MatrixOperand(b)
  let out = Tensor(uninitializedShape: shape, dtype: a.dtype)
  let aBatch = Shape.broadcastStrides(Array(a.shape.dropLast(2)), Array(lhs.tensor.strides.dropLast(2)), to: batch)
  let bBatch = Shape.broadcastStrides(Array(b.shape.dropLast(2)), Array(rhs.tensor.strides.dropLast(2)), to: batch)
  // Many small products (attention's per-head scores) go to the threads whole, each one a
  // single-threaded call; splitting every small product across threads costs a hand-off each.
  let wholeProducts = count >= 2 * Parallel.threadCount && m * n * k < 1 << 21
  func kernel<T: TensorScalar>(_: T.Type) {
    let pa = lhs.tensor.base(T.self), pb = rhs.tensor.base(T.self), pc = out.base(T.self)
    func product(_ i: Int, split: Bool) {
      var rest = i, oa = 0, ob = 0
      for d in batch.indices.reversed() {
        let index = rest % batch[d]
        rest /= batch[d]
        oa += index * aBatch[d]
        ob += index * bBatch[d]
      }
      if m == 0 || n == 0 { return }
      if k == 0 {
        (pc + i * m * n).update(repeating: 0, count: m * n)
        return
      }
      if split {
        T.gemm(
          transposeA: lhs.transposed, transposeB: rhs.transposed, m: m, n: n, k: k, alpha: 1,
          a: pa + oa, lda: lhs.leading, b: pb + ob, ldb: rhs.leading, beta: 0, c: pc + i * m * n, ldc: n)
      } else {
        T.blasGemm(
          transposeA: lhs.transposed, transposeB: rhs.transposed, m: m, n: n, k: k, alpha: 1,
          a: pa + oa, lda: lhs.leading, b: pb + ob, ldb: rhs.leading, beta: 0, c: pc + i * m * n, ldc: n)
      }
    }
    if wholeProducts {
      Parallel.forRanges(count, costPerItem: m * n * k) { r in for i in r { product(i, split: false) } }
    } else {
      for i in 0..<count { product(i, split: true) }
    }
  }
  a.dtype.dispatch(kernel, kernel)
  return out
}

/// A matrix operand as BLAS wants it: a leading dimension and whether it is stored transposed.
private struct MatrixOperand {
  let tensor: Tensor
  let transposed: Bool
  let leading: Int

  init(_ t: Tensor) {
    let r = t.rank, rows = t.shape[r - 2], cols = t.shape[r - 1]
    let sr = t.strides[r - 2], sc = t.strides[r - 1]
    if (sc == 1 || cols == 1) && sr >= Swift.max(cols, 1) {
      (tensor, transposed, leading) = (t, false, sr)
    } else if (sr == 1 || rows == 1) && sc >= Swift.max(rows, 1) {
      (tensor, transposed, leading) = (t, true, sc)
    } else {
      (tensor, transposed, leading) = (t.contiguous(), false, Swift.max(cols, 1))
    }
  }
}

/// `x` [..., in] times `weight` [out, in] transposed, plus `bias` [out] on every row: PyTorch's
/// `linear`, [..., out].
///
/// The bias is written into the result first and the product accumulated onto it (GEMM with
/// β = 1), so adding it costs no pass of its own: a separate addition would read and write the
/// whole result once more. Threads take blocks of rows, writing a block's bias just before its
/// product, so that the product finds it in cache.
/// - Precondition: `x`'s last dimension is `weight`'s second; `bias`, if given, has `out` elements;
///   all share a dtype.
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
  require(
    x.rank >= 1 && weight.rank == 2 && x.shape[x.rank - 1] == weight.shape[1] && x.dtype == weight.dtype,
    "linear: input \(x.shape) (\(x.dtype)) does not fit weight \(weight.shape) (\(weight.dtype)) as [..., in] and [out, in]")
  let (inputs, outputs) = (weight.shape[1], weight.shape[0]), rows = x.count / Swift.max(inputs, 1)
  if let bias { require(bias.count == outputs && bias.dtype == x.dtype, "linear: bias \(bias.shape) (\(bias.dtype)) does not have \(outputs) \(x.dtype) elements") }
  let shape = Array(x.shape.dropLast()) + [outputs]
  guard let bias, rows > 0, outputs > 0 else {
    let product = reshape(matmul(reshape(x, to: [rows, inputs]), transpose(weight)), to: shape)
    return bias.map { product + $0 } ?? product
  }
  let a = MatrixOperand(reshape(x, to: [rows, inputs])), w = MatrixOperand(transpose(weight)), b = bias.contiguous()
  let out = Tensor(uninitializedShape: shape, dtype: x.dtype)
  // Blocks of rows whose results fill about 256 KiB, at least 16 rows.
  let block = Swift.max(16, (1 << 16) / Swift.max(outputs, 1)), blocks = (rows + block - 1) / block
  func kernel<T: TensorScalar>(_: T.Type) {
    let pa = a.tensor.base(T.self), pw = w.tensor.base(T.self), pb = b.base(T.self), pc = out.base(T.self)
    Parallel.forRanges(blocks, costPerItem: block * outputs * Swift.max(inputs, 1)) { range in
      for index in range {
        let start = index * block, count = Swift.min(block, rows - start), c = pc + start * outputs
        for row in 0..<count { (c + row * outputs).update(from: pb, count: outputs) }
        guard inputs > 0 else { continue }
        T.blasGemm(
          transposeA: a.transposed, transposeB: w.transposed, m: count, n: outputs, k: inputs, alpha: 1,
          a: pa + (a.transposed ? start : start * a.leading), lda: a.leading, b: pw, ldb: w.leading, beta: 1, c: c, ldc: outputs)
      }
    }
  }
  x.dtype.dispatch(kernel, kernel)
  return out
}
