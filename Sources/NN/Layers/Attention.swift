import Autograd
import TensorModule

/// Multi-head scaled dot-product attention (Vaswani et al. 2017) over batch-first sequences
/// [batch, length, embedding], with PyTorch's parameters and names (`in_proj_weight`,
/// `in_proj_bias`, `out_proj`) and initialisation.
public final class MultiheadAttention: Layer {
  /// The query, key and value projections stacked: [3 · embedding, embedding].
  public let inputProjectionWeight: Variable
  /// Their biases: [3 · embedding].
  public let inputProjectionBias: Variable
  /// The output projection.
  public let outputProjection: Linear
  /// The number of heads; each attends over `embedding / heads` features.
  public let headCount: Int
  /// Dropout on the attention weights in training.
  public let dropoutProbability: Double
  /// Whether each position attends only to itself and earlier positions when called as a layer.
  public let causal: Bool

  /// Attention over `embeddingDimension` features in `headCount` heads.
  public init(embeddingDimension e: Int, headCount: Int, dropout: Double = 0, causal: Bool = false) {
    require(e > 0 && headCount > 0 && e % headCount == 0, "MultiheadAttention: \(e) features do not divide into \(headCount) heads")
    require((0..<1).contains(dropout), "MultiheadAttention: dropout \(dropout) is not in [0, 1)")
    inputProjectionWeight = parameter(Initializer.xavierUniform.tensor([3 * e, e]), "in_proj_weight")
    inputProjectionBias = parameter(Tensor(zeros: [3 * e]), "in_proj_bias")
    outputProjection = Linear(inputFeatures: e, outputFeatures: e)
    outputProjection.bias?.value = Tensor(zeros: [e])
    (self.headCount, dropoutProbability, self.causal) = (headCount, dropout, causal)
  }

  /// `in_proj_weight` and `in_proj_bias`.
  public var ownParameters: [(name: String, variable: Variable)] {
    [("in_proj_weight", inputProjectionWeight), ("in_proj_bias", inputProjectionBias)]
  }

  /// `out_proj`.
  public var children: [(name: String, module: any Module)] { [("out_proj", outputProjection)] }

  /// Self-attention of `input` [batch, length, embedding], causal if the layer is.
  public func callAsFunction(_ input: Variable) -> Variable { callAsFunction(input, key: input, value: input, causal: causal) }

  /// Attention of `query` [batch, targets, embedding] over `key` and `value` [batch, sources,
  /// embedding]; with `causal`, target i attends to sources 0...i only.
  public func callAsFunction(_ query: Variable, key: Variable, value: Variable, causal: Bool) -> Variable {
    let e = inputProjectionWeight.shape[1], h = headCount, d = e / h
    for (name, x) in [("query", query), ("key", key), ("value", value)] {
      require(x.shape.count == 3 && x.shape[2] == e, "MultiheadAttention: \(name) \(x.shape) is not [batch, length, \(e)]")
    }
    require(key.shape == value.shape && key.shape[0] == query.shape[0], "MultiheadAttention: query \(query.shape), key \(key.shape) and value \(value.shape) do not fit")
    let (batch, targets, sources) = (query.shape[0], query.shape[1], key.shape[1])
    let projected: [Variable]
    if query === key && key === value {
      // Self-attention: one product for the three projections.
      projected = split(linear(query, weight: inputProjectionWeight, bias: inputProjectionBias), sizes: [e, e, e], alongAxis: 2)
    } else {
      let weights = split(inputProjectionWeight, sizes: [e, e, e], alongAxis: 0)
      let biases = split(inputProjectionBias, sizes: [e, e, e], alongAxis: 0)
      projected = zip([query, key, value], zip(weights, biases)).map { x, wb in linear(x, weight: wb.0, bias: wb.1) }
    }
    // [batch, length, heads, d] -> [batch, heads, length, d], views of the projections.
    let heads = projected.enumerated().map { i, x in permute(reshape(x, to: [batch, i == 0 ? targets : sources, h, d]), [0, 2, 1, 3]) }
    require(!causal || targets <= sources, "MultiheadAttention: a causal mask needs no more targets (\(targets)) than sources (\(sources))")
    let attended: Variable
    if dropoutProbability == 0 || LearningPhase.current != .training {
      attended = permute(scaledDotProductAttention(heads[0], heads[1], heads[2], causal: causal), [0, 2, 1, 3])
    } else {
      // Dropout on the attention weights needs them as a variable: the composite.
      var scores = matmul(heads[0], transpose(heads[1])) * (1 / Double(d).squareRoot())
      if causal {
        var mask = [Double](repeating: 0, count: targets * sources)
        for i in 0..<targets { for j in (i + 1 + sources - targets)..<sources { mask[i * sources + j] = -.infinity } }
        scores = scores + Variable(Tensor(mask, shape: [targets, sources]).converted(to: scores.dtype))
      }
      let weights = dropout(softmax(scores, alongAxis: -1), probability: dropoutProbability, maskShape: scores.shape)
      attended = permute(matmul(weights, heads[2]), [0, 2, 1, 3])
    }
    return outputProjection(reshape(attended, to: [batch, targets, e]))
  }
}

/// A pre-norm Transformer block (Xiong et al. 2020; GPT-2's arrangement): x + attention(norm1(x)),
/// then x + feed-forward(norm2(x)), the feed-forward network two linear layers around a GELU.
/// Names follow PyTorch's `TransformerEncoderLayer` with `norm_first=True`.
public final class TransformerBlock: Layer {
  /// The normalisation before attention.
  public let norm1: LayerNorm
  /// The attention.
  public let attention: MultiheadAttention
  /// The normalisation before the feed-forward network.
  public let norm2: LayerNorm
  /// The feed-forward network's first layer, to `feedForwardDimension` features.
  public let linear1: Linear
  /// Its second layer, back to the embedding.
  public let linear2: Linear
  /// Dropout after attention and after the feed-forward network, in training.
  public let dropoutProbability: Double

  /// A block over `embeddingDimension` features with `headCount` heads and a feed-forward network of
  /// `feedForwardDimension` features (4 · embedding by default).
  public init(embeddingDimension e: Int, headCount: Int, feedForwardDimension: Int? = nil, dropout: Double = 0, causal: Bool = false) {
    norm1 = LayerNorm([e])
    attention = MultiheadAttention(embeddingDimension: e, headCount: headCount, dropout: dropout, causal: causal)
    norm2 = LayerNorm([e])
    linear1 = Linear(inputFeatures: e, outputFeatures: feedForwardDimension ?? 4 * e)
    linear2 = Linear(inputFeatures: feedForwardDimension ?? 4 * e, outputFeatures: e)
    dropoutProbability = dropout
  }

  /// `norm1`, `self_attn`, `norm2`, `linear1`, `linear2`.
  public var children: [(name: String, module: any Module)] {
    [("norm1", norm1), ("self_attn", attention), ("norm2", norm2), ("linear1", linear1), ("linear2", linear2)]
  }

  /// The block applied to `input` [batch, length, embedding].
  public func callAsFunction(_ input: Variable) -> Variable {
    let p = dropoutProbability
    let x = input + dropout(attention(norm1(input)), probability: p, maskShape: input.shape)
    return x + dropout(linear2(gelu(linear1(norm2(x)))), probability: p, maskShape: x.shape)
  }
}
