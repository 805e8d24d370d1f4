import TensorModule

/// Scaled dot-product attention, softmax(scale · Q Kᵀ) V, over `query` [..., Lq, d], `key`
/// [..., Lk, d] and `value` [..., Lk, dv] with equal leading dimensions (PyTorch's
/// `scaled_dot_product_attention` without dropout); with `causal`, query i attends to keys
/// 0 ... i + Lk - Lq. `scale` is 1/√d unless given.
///
/// A primitive although it composes from `matmul`, `softmax` and a mask: composed it made six
/// passes over the scores, every one split across the threads; as one kernel a thread takes a
/// whole (batch, head) pair while its scores are in cache (see Tensor+Attention.swift). It keeps
/// the operands and the attention weights for its pullback. `Tests/AutogradTests` checks it
/// against the composite.
public func scaledDotProductAttention(
  _ query: Variable, _ key: Variable, _ value: Variable, causal: Bool = false, scale: Double? = nil
) -> Variable {
  let (q, k, v) = (query.value, key.value, value.value)
  let s = scale ?? 1 / Double(max(q.shape.last ?? 1, 1)).squareRoot()
  let (output, weights) = TensorModule.scaledDotProductAttention(query: q, key: k, value: v, scale: s, causal: causal)
  return recordOperation("scaledDotProductAttention", output, inputs: [query, key, value]) { grad in
    let g = scaledDotProductAttentionGradient(grad, query: q, key: k, value: v, weights: weights, scale: s, causal: causal)
    return [g.query, g.key, g.value]
  }
}
