/// Layer normalisation over trailing dimensions, and its gradient, one pass per row each.
///
/// Composed from means, subtractions, squares, a square root and a division, it made about ten
/// passes over its input and kept several of them for the backward pass; a Transformer block
/// normalises twice. Fused, the forward pass reads the input twice (mean, then variance around it,
/// which is exact where one-pass moments cancel) and keeps only the per-row mean and 1/σ.

/// `x` normalised over its last `normalizedCount` elements of each row (the trailing dimensions
/// flattened), scaled by `weight` and shifted by `bias` (each of `normalizedCount` elements, or nil).
///
/// - Returns: the output, with `x`'s shape, and per row the mean and 1 / √(variance + epsilon), of
///   shape [rows], for ``layerNormGradient(_:input:mean:inverseDeviation:weight:affine:)``.
public func layerNorm(
  _ x: Tensor, normalizedCount n: Int, weight: Tensor?, bias: Tensor?, epsilon: Double
) -> (output: Tensor, mean: Tensor, inverseDeviation: Tensor) {
  let rows = checkedRows(x, n, weight, bias, "layerNorm")
  let input = x.contiguous(), w = weight?.contiguous(), b = bias?.contiguous()
  let out = Tensor(uninitializedShape: x.shape, dtype: x.dtype)
  let mean = Tensor(uninitializedShape: [rows], dtype: x.dtype), inverse = Tensor(uninitializedShape: [rows], dtype: x.dtype)
  func kernel<T: TensorScalar>(_: T.Type) {
    let px = input.base(T.self), py = out.base(T.self), pm = mean.base(T.self), pr = inverse.base(T.self)
    let pw = w?.base(T.self), pb = b?.base(T.self)
    Parallel.forRanges(rows, costPerItem: 4 * n) { range in
      for row in range {
        let xr = px + row * n, yr = py + row * n
        let m = rowSum(xr, n) / T(n)
        let r = 1 / (rowSumOfSquares(xr, n, around: m) / T(n) + T(epsilon)).squareRoot()
        (pm[row], pr[row]) = (m, r)
        switch (pw, pb) {
        case let (pw?, pb?): for i in 0..<n { yr[i] = (xr[i] - m) * r * pw[i] + pb[i] }
        case let (pw?, nil): for i in 0..<n { yr[i] = (xr[i] - m) * r * pw[i] }
        case let (nil, pb?): for i in 0..<n { yr[i] = (xr[i] - m) * r + pb[i] }
        case (nil, nil): for i in 0..<n { yr[i] = (xr[i] - m) * r }
        }
      }
    }
  }
  x.dtype.dispatch(kernel, kernel)
  return (out, mean, inverse)
}

/// The gradients of ``layerNorm(_:normalizedCount:weight:bias:epsilon:)`` for the output gradient
/// `gradient`, from the input and the statistics that call returned: with x̂ = (x - μ)/σ and
/// h = g · weight, dx = (h - mean(h) - x̂ · mean(h x̂)) / σ per row; dweight = Σ g x̂ and
/// dbias = Σ g over rows, computed only with `affine` (nil otherwise: a normalisation without
/// parameters, GroupNorm's, needs neither).
public func layerNormGradient(
  _ gradient: Tensor, input x: Tensor, mean: Tensor, inverseDeviation: Tensor, weight: Tensor?, affine: Bool
) -> (input: Tensor, weight: Tensor?, bias: Tensor?) {
  let n = x.shape.count == 0 ? 1 : x.count / Swift.max(mean.count, 1)
  let rows = checkedRows(x, n, weight, nil, "layerNormGradient")
  require(gradient.shape == x.shape && gradient.dtype == x.dtype && mean.count == rows && inverseDeviation.count == rows,
    "layerNormGradient: gradient \(gradient.shape), input \(x.shape) and statistics \(mean.shape) do not fit")
  let input = x.contiguous(), g = gradient.contiguous(), w = weight?.contiguous()
  let dx = Tensor(uninitializedShape: x.shape, dtype: x.dtype)
  let scaled = affine ? Tensor(uninitializedShape: [rows, n], dtype: x.dtype) : nil  // g · x̂, summed into dweight
  func kernel<T: TensorScalar>(_: T.Type) {
    let px = input.base(T.self), pg = g.base(T.self), pd = dx.base(T.self), ps = scaled?.base(T.self)
    let pm = mean.contiguous().base(T.self), pr = inverseDeviation.contiguous().base(T.self), pw = w?.base(T.self)
    Parallel.forRanges(rows, costPerItem: 6 * n) { range in
      let h = UnsafeMutablePointer<T>.allocate(capacity: 2 * n), normalized = h + n
      defer { h.deallocate() }
      for row in range {
        let xr = px + row * n, gr = pg + row * n, dr = pd + row * n
        let (m, r) = (pm[row], pr[row])
        for i in 0..<n { normalized[i] = (xr[i] - m) * r }
        if let pw { for i in 0..<n { h[i] = gr[i] * pw[i] } } else { h.update(from: gr, count: n) }
        if let ps { for i in 0..<n { ps[row * n + i] = gr[i] * normalized[i] } }
        let meanH = rowSum(h, n) / T(n), meanHX = rowDot(h, normalized, n, around: 0) / T(n)
        for i in 0..<n { dr[i] = (h[i] - meanH - normalized[i] * meanHX) * r }
      }
    }
  }
  x.dtype.dispatch(kernel, kernel)
  guard let scaled else { return (dx, nil, nil) }
  let affineShape = weight?.shape ?? [n]
  return (dx, reshape(sum(scaled, alongAxes: [0]), to: affineShape), reshape(sum(reshape(g, to: [rows, n]), alongAxes: [0]), to: affineShape))
}

/// The number of rows of `n` elements in `x`, after checking the affine parameters.
private func checkedRows(_ x: Tensor, _ n: Int, _ weight: Tensor?, _ bias: Tensor?, _ operation: String) -> Int {
  require(n > 0 && x.count % n == 0, "\(operation): \(x.shape) does not split into rows of \(n) elements")
  for (name, p) in [("weight", weight), ("bias", bias)] {
    if let p { require(p.count == n && p.dtype == x.dtype, "\(operation): \(name) \(p.shape) (\(p.dtype)) does not fit rows of \(n) \(x.dtype) elements") }
  }
  return x.count / n
}
