/// Scaled dot-product attention, softmax(scale · Q Kᵀ) V per batch position, and its gradient.
///
/// Composed from a batched product, a scaling, a mask, a softmax and a second product, attention
/// made six passes over its scores (one of each, and the permutation copies around them), each
/// split across the threads in turn. Here one thread takes one (batch, head) pair from its first
/// product to its last: the pair's scores (128 x 128 in a small Transformer, 64 KiB) stay in the
/// core's cache between the steps, and the products are single-threaded OpenBLAS calls.

/// Softmax(scale · Q Kᵀ) V for `query` [..., Lq, d], `key` [..., Lk, d] and `value` [..., Lk, dv]
/// with equal leading (batch) dimensions; with `causal`, query i attends to keys 0 ... i + Lk - Lq.
///
/// The operands may be strided views (the heads of a projection, sliced and permuted); each
/// matrix is read where it lies when its rows are contiguous.
/// - Returns: the output [..., Lq, dv], and the attention weights [..., Lq, Lk] for the gradient.
///   With four or more dimensions the output is stored [..., Lq, heads, dv], heads being the last
///   leading dimension, so that merging the heads back ([batch, Lq, heads · dv]) is a view.
public func scaledDotProductAttention(
  query: Tensor, key: Tensor, value: Tensor, scale: Double, causal: Bool
) -> (output: Tensor, weights: Tensor) {
  let shape = AttentionShape(query, key, value, causal: causal)
  let (q, k, v) = (AttentionOperand(query), AttentionOperand(key), AttentionOperand(value))
  let output = shape.headsInterleaved(shape.batch + [shape.targets, shape.valueWidth], query.dtype)
  let weights = Tensor(uninitializedShape: shape.batch + [shape.targets, shape.sources], dtype: query.dtype)
  let (lq, lk, d, dv) = (shape.targets, shape.sources, shape.width, shape.valueWidth)
  func kernel<T: TensorScalar>(_: T.Type) {
    let o = AttentionOperand(output), pw = weights.base(T.self)
    Parallel.forRanges(shape.count, costPerItem: lq * lk * (d + dv + 8)) { range in
      for i in range {
        let p = pw + i * lq * lk, scores = UnsafePointer(p)
        T.blasGemm(
          transposeA: false, transposeB: true, m: lq, n: lk, k: d, alpha: T(scale), a: q.matrix(i, T.self), lda: q.rowStride,
          b: k.matrix(i, T.self), ldb: k.rowStride, beta: 0, c: p, ldc: lk)
        if causal {
          for row in 0..<lq {
            let allowed = row + 1 + lk - lq
            softmaxRows(scores + row * lk, p + row * lk, rows: 1, length: allowed, logarithm: false)
            (p + row * lk + allowed).update(repeating: 0, count: lk - allowed)
          }
        } else {
          softmaxRows(scores, p, rows: lq, length: lk, logarithm: false)
        }
        T.blasGemm(
          transposeA: false, transposeB: false, m: lq, n: dv, k: lk, alpha: 1, a: scores, lda: lk,
          b: v.matrix(i, T.self), ldb: v.rowStride, beta: 0, c: o.matrix(i, T.self), ldc: o.rowStride)
      }
    }
  }
  if shape.count > 0 && lq > 0 && lk > 0 && dv > 0 {
    switch query.dtype {
    case .float32: kernel(Float.self)
    case .float64: kernel(Double.self)
    }
  } else if lk == 0 {
    return (Tensor(zeros: output.shape, dtype: query.dtype), weights)  // attending to nothing gives 0
  }
  return (output, weights)
}

/// The gradients of ``scaledDotProductAttention(query:key:value:scale:causal:)`` for the output
/// gradient `gradient`, from the operands and the attention weights P it returned:
/// dV = Pᵀ G, dS = P ∘ (G Vᵀ - rowsum(P ∘ G Vᵀ)), dQ = scale · dS K, dK = scale · dSᵀ Q.
/// Masked weights are 0, so they pass no gradient. Stored like the output.
public func scaledDotProductAttentionGradient(
  _ gradient: Tensor, query: Tensor, key: Tensor, value: Tensor, weights: Tensor, scale: Double
) -> (query: Tensor, key: Tensor, value: Tensor) {
  let shape = AttentionShape(query, key, value, causal: false)
  require(
    gradient.shape == shape.batch + [shape.targets, shape.valueWidth] && weights.shape == shape.batch + [shape.targets, shape.sources]
      && gradient.dtype == query.dtype && weights.dtype == query.dtype,
    "scaledDotProductAttentionGradient: gradient \(gradient.shape) or weights \(weights.shape) do not fit the operands")
  let (q, k, v, g) = (AttentionOperand(query), AttentionOperand(key), AttentionOperand(value), AttentionOperand(gradient))
  let (lq, lk, d, vw) = (shape.targets, shape.sources, shape.width, shape.valueWidth)
  guard shape.count > 0 && lq > 0 && lk > 0 else {
    // No query or no key: nothing flows, and each gradient is zero.
    return (Tensor(zeros: query.shape, dtype: query.dtype), Tensor(zeros: key.shape, dtype: key.dtype), Tensor(zeros: value.shape, dtype: value.dtype))
  }
  let weights = weights.contiguous()
  let dq = shape.headsInterleaved(query.shape, query.dtype), dk = shape.headsInterleaved(key.shape, query.dtype)
  let dv = shape.headsInterleaved(value.shape, query.dtype)
  func kernel<T: TensorScalar>(_: T.Type) {
    let (oq, ok, ov) = (AttentionOperand(dq), AttentionOperand(dk), AttentionOperand(dv)), pw = weights.base(T.self)
    Parallel.forRanges(shape.count, costPerItem: lq * lk * (2 * d + 2 * vw + 8)) { range in
      let scratch = UnsafeMutablePointer<T>.allocate(capacity: lq * lk)
      defer { scratch.deallocate() }
      for i in range {
        let p = UnsafePointer(pw + i * lq * lk)
        T.blasGemm(
          transposeA: true, transposeB: false, m: lk, n: vw, k: lq, alpha: 1, a: p, lda: lk,
          b: g.matrix(i, T.self), ldb: g.rowStride, beta: 0, c: ov.matrix(i, T.self), ldc: ov.rowStride)
        T.blasGemm(
          transposeA: false, transposeB: true, m: lq, n: lk, k: vw, alpha: 1, a: g.matrix(i, T.self), lda: g.rowStride,
          b: v.matrix(i, T.self), ldb: v.rowStride, beta: 0, c: scratch, ldc: lk)
        softmaxGradientRows(p, UnsafePointer(scratch), scratch, rows: lq, length: lk, logarithm: false)
        T.blasGemm(
          transposeA: false, transposeB: false, m: lq, n: d, k: lk, alpha: T(scale), a: scratch, lda: lk,
          b: k.matrix(i, T.self), ldb: k.rowStride, beta: 0, c: oq.matrix(i, T.self), ldc: oq.rowStride)
        T.blasGemm(
          transposeA: true, transposeB: false, m: lk, n: d, k: lq, alpha: T(scale), a: scratch, lda: lk,
          b: q.matrix(i, T.self), ldb: q.rowStride, beta: 0, c: ok.matrix(i, T.self), ldc: ok.rowStride)
      }
    }
  }
  switch query.dtype {
  case .float32: kernel(Float.self)
  case .float64: kernel(Double.self)
  }
  return (dq, dk, dv)
}

/// The sizes of an attention and the layout of what it writes.
private struct AttentionShape {
  let batch: [Int], targets: Int, sources: Int, width: Int, valueWidth: Int
  var count: Int { batch.reduce(1, *) }

  init(_ q: Tensor, _ k: Tensor, _ v: Tensor, causal: Bool) {
    require(
      q.rank >= 2 && k.rank == q.rank && v.rank == q.rank && q.shape.dropLast(2) == k.shape.dropLast(2)
        && q.shape.dropLast(2) == v.shape.dropLast(2) && q.shape.last == k.shape.last
        && k.shape[k.rank - 2] == v.shape[v.rank - 2] && q.dtype == k.dtype && q.dtype == v.dtype,
      "scaledDotProductAttention: query \(q.shape), key \(k.shape) and value \(v.shape) do not fit [..., Lq, d], [..., Lk, d], [..., Lk, dv]")
    (batch, targets, width) = (Array(q.shape.dropLast(2)), q.shape[q.rank - 2], q.shape[q.rank - 1])
    (sources, valueWidth) = (k.shape[k.rank - 2], v.shape[v.rank - 1])
    require(!causal || targets <= sources, "scaledDotProductAttention: a causal mask needs no more queries (\(targets)) than keys (\(sources))")
  }

  /// An uninitialised tensor of `shape` (these batch dimensions, then [L, width]) stored with the
  /// last batch dimension (the heads) inside the positions when there are two or more.
  func headsInterleaved(_ shape: [Int], _ dtype: DType) -> Tensor {
    let r = shape.count
    guard r >= 4 else { return Tensor(uninitializedShape: shape, dtype: dtype) }
    var order = Array(0..<r)
    order.swapAt(r - 3, r - 2)  // memory order [..., L, heads, width]
    let stored = Shape.contiguousStrides(order.map { shape[$0] })
    var strides = [Int](repeating: 0, count: r)
    for (i, axis) in order.enumerated() { strides[axis] = stored[i] }
    return Tensor(uninitializedShape: shape, dtype: dtype, strides: strides)
  }
}

/// One operand of the attention: where matrix i of its batch starts, and its row stride. Copied
/// to row-major when its rows are not contiguous.
private struct AttentionOperand {
  let tensor: Tensor, rowStride: Int, batchStrides: [Int], batch: [Int]

  init(_ t: Tensor) {
    let r = t.rank, columns = t.shape[r - 1]
    let rowsContiguous = (t.strides[r - 1] == 1 || columns <= 1) && t.strides[r - 2] >= columns
    tensor = rowsContiguous ? t : t.contiguous()
    rowStride = t.shape[r - 2] <= 1 ? Swift.max(columns, 1) : tensor.strides[r - 2]
    batch = Array(t.shape.dropLast(2))
    batchStrides = Array(tensor.strides.dropLast(2))
  }

  /// The first element of matrix `i` (row-major over the batch dimensions).
  func matrix<T: TensorScalar>(_ i: Int, _: T.Type) -> UnsafeMutablePointer<T> {
    var rest = i, offset = 0
    for d in batch.indices.reversed() {
      offset += rest % batch[d] * batchStrides[d]
      rest /= batch[d]
    }
    return tensor.base(T.self) + offset
  }
}
