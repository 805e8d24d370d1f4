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
        let (pq, pk, pv, po) = (q.matrix(i, T.self), k.matrix(i, T.self), v.matrix(i, T.self), o.matrix(i, T.self))
        for (rows, keys) in shape.blocks(causal: causal) {
          T.blasGemm(
            transposeA: false, transposeB: true, m: rows.count, n: keys, k: d, alpha: T(scale), a: pq + rows.lowerBound * q.rowStride,
            lda: q.rowStride, b: pk, ldb: k.rowStride, beta: 0, c: p + rows.lowerBound * lk, ldc: lk)
          if causal {
            for row in rows {
              let allowed = row + 1 + lk - lq
              softmaxRows(scores + row * lk, p + row * lk, rows: 1, length: allowed, logarithm: false)
              (p + row * lk + allowed).update(repeating: 0, count: lk - allowed)
            }
          } else {
            softmaxRows(scores, p, rows: lq, length: lk, logarithm: false)
          }
          T.blasGemm(
            transposeA: false, transposeB: false, m: rows.count, n: dv, k: keys, alpha: 1, a: scores + rows.lowerBound * lk, lda: lk,
            b: pv, ldb: v.rowStride, beta: 0, c: po + rows.lowerBound * o.rowStride, ldc: o.rowStride)
        }
      }
    }
  }
  if shape.count > 0 && lq > 0 && lk > 0 && dv > 0 {
    query.dtype.dispatch(kernel, kernel)
  } else if lk == 0 {
    return (Tensor(zeros: output.shape, dtype: query.dtype), weights)  // attending to nothing gives 0
  }
  return (output, weights)
}

/// The gradients of ``scaledDotProductAttention(query:key:value:scale:causal:)`` for the output
/// gradient `gradient`, from the operands and the attention weights P it returned:
/// dV = Pᵀ G, dS = P ∘ (G Vᵀ - rowsum(P ∘ G Vᵀ)), dQ = scale · dS K, dK = scale · dSᵀ Q.
/// Masked weights are 0, so they pass no gradient; with `causal` (as the forward pass had it) the
/// products skip the masked blocks. Stored like the output.
public func scaledDotProductAttentionGradient(
  _ gradient: Tensor, query: Tensor, key: Tensor, value: Tensor, weights: Tensor, scale: Double, causal: Bool = false
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
        let (pq, pk, pv, pg) = (q.matrix(i, T.self), k.matrix(i, T.self), v.matrix(i, T.self), g.matrix(i, T.self))
        let (gq, gk, gv) = (oq.matrix(i, T.self), ok.matrix(i, T.self), ov.matrix(i, T.self))
        if causal {  // dK and dV add a term per block of queries
          for row in 0..<lk {
            (gk + row * ok.rowStride).update(repeating: 0, count: d)
            (gv + row * ov.rowStride).update(repeating: 0, count: vw)
          }
        }
        let beta: T = causal ? 1 : 0
        for (rows, keys) in shape.blocks(causal: causal) {
          let (first, count) = (rows.lowerBound, rows.count), block = UnsafePointer(scratch + first * lk)
          T.blasGemm(
            transposeA: true, transposeB: false, m: keys, n: vw, k: count, alpha: 1, a: p + first * lk, lda: lk,
            b: pg + first * g.rowStride, ldb: g.rowStride, beta: beta, c: gv, ldc: ov.rowStride)
          T.blasGemm(
            transposeA: false, transposeB: true, m: count, n: keys, k: vw, alpha: 1, a: pg + first * g.rowStride, lda: g.rowStride,
            b: pv, ldb: v.rowStride, beta: 0, c: scratch + first * lk, ldc: lk)
          for row in rows {
            softmaxGradientRows(p + row * lk, UnsafePointer(scratch + row * lk), scratch + row * lk, rows: 1, length: keys, logarithm: false)
          }
          T.blasGemm(
            transposeA: false, transposeB: false, m: count, n: d, k: keys, alpha: T(scale), a: block, lda: lk,
            b: pk, ldb: k.rowStride, beta: 0, c: gq + first * oq.rowStride, ldc: oq.rowStride)
          T.blasGemm(
            transposeA: true, transposeB: false, m: keys, n: d, k: count, alpha: T(scale), a: block, lda: lk,
            b: pq + first * q.rowStride, ldb: q.rowStride, beta: beta, c: gk, ldc: ok.rowStride)
        }
      }
    }
  }
  query.dtype.dispatch(kernel, kernel)
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

  /// The blocks of queries the kernels take in turn and how many keys each reads: all at once
  /// without a mask; with a causal mask, blocks of 32 queries that read only the keys their last
  /// query may attend to, which skips about three eighths of the products' work at 128 positions.
  func blocks(causal: Bool) -> [(rows: Range<Int>, keys: Int)] {
    guard causal else { return [(0..<targets, sources)] }
    return stride(from: 0, to: targets, by: 32).map { start in
      let end = Swift.min(start + 32, targets)
      return (start..<end, Swift.min(sources, end + sources - targets))
    }
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
