/// The end of a squeeze-and-excitation residual block taken straight from the batch normalisation's
/// input: `relu(bn(x) · s + r)` with one factor of `s` per image and channel, the plane sums that
/// `s` is computed from, and the gradients, each computed from `x` with the normalised map `bn(x)`
/// recomputed in registers instead of written and read back. Composed of ``batchNormalized(_:mean:variance:weight:bias:epsilon:applyingReLU:ceiling:)``,
/// ``sum(_:alongAxes:keepingDimensions:)`` and ``addReLU(_:scaledBy:_:)``, the forward pass writes
/// the normalised map and reads it twice; here it is never stored. Each result has the bits of the
/// composition: the normalised values are rounded as `batchNormalized` rounds them (`x · scale +
/// shift`, two roundings) before they are used.

/// The planes of `x` [N, C, H, W] (dense, each plane contiguous) with `scale` [N, C, 1, 1] and the
/// tensors beside `x` in its layout, or `nil`.
private func excitationPlanes(_ x: Tensor, _ scale: Tensor, _ others: [Tensor]) -> Planes? {
  guard x.rank == 4, scale.shape == [x.shape[0], x.shape[1], 1, 1] else { return nil }
  return Planes(x, scale, others)
}

/// Whether ``batchNormAddReLU(_:mean:variance:weight:bias:epsilon:scaledBy:adding:)`` and its
/// gradients take their one-pass form for these tensors: `input` [N, C, H, W] with dense planes,
/// `scale` [N, C, 1, 1] and `residual` laid out as `input`. Otherwise they compose the unfused
/// operations.
public func batchNormExcitationFuses(_ input: Tensor, scale: Tensor, residual: Tensor) -> Bool {
  excitationPlanes(input, scale, [residual]) != nil
}

/// Per channel, the normalisation's `scale` and `shift` (``affineCoefficients(mean:variance:weight:bias:epsilon:)``).
private func coefficients<T: TensorScalar>(
  _ mean: Tensor, _ variance: Tensor, _ weight: Tensor?, _ bias: Tensor?, _ epsilon: Double, _: T.Type
) -> [(scale: T, shift: T)] {
  let pm = mean.contiguous().base(T.self), pv = variance.contiguous().base(T.self)
  let pw = weight?.contiguous().base(T.self), pb = bias?.contiguous().base(T.self)
  return (0..<mean.count).map { affineCoefficients(mean: pm[$0], variance: pv[$0], weight: pw?[$0], bias: pb?[$0], epsilon: epsilon) }
}

/// The sum over each plane of `batchNormalized(input, ...)` ([N, C], laid out as ``sum(_:alongAxes:keepingDimensions:)``
/// lays out the sums over axes 2 and 3), with its bits, without writing the normalised map.
public func batchNormPlaneSums(
  _ input: Tensor, mean: Tensor, variance: Tensor, weight: Tensor?, bias: Tensor?, epsilon: Double
) -> Tensor {
  checkChannels("batchNormPlaneSums", input, [("mean", mean), ("variance", variance), ("weight", weight), ("bias", bias)])
  let x = input.denseWithPlanes()
  let probe = Tensor(zeros: [x.shape[0], x.shape[1], 1, 1], dtype: x.dtype)  // a scale's shape, for the layout
  guard let planes = excitationPlanes(x, probe, []) else {
    let y = batchNormalized(x, mean: mean, variance: variance, weight: weight, bias: bias, epsilon: epsilon)
    return sum(y, alongAxes: [2, 3])
  }
  let sums = Tensor(uninitializedShape: [x.shape[0], x.shape[1]], dtype: x.dtype, strides: Array(planes.sumStrides[..<2]))
  let length = planes.length
  func kernel<T: TensorScalar>(_: T.Type) {
    let affine = coefficients(mean, variance, weight, bias, epsilon, T.self), px = x.base(T.self), ps = sums.base(T.self)
    Parallel.forRanges(planes.count, costPerItem: length) { range in
      for p in range {
        let (offset, _, channel) = planes.offsets(p), (scale, shift) = affine[channel]
        ps[p] = rowSum(px + offset, length, scale: scale, shift: shift)
      }
    }
  }
  x.dtype.dispatch(kernel, kernel)
  return sums
}

/// `relu(batchNormalized(input, ...) · scale + residual)`, `scale` [N, C, 1, 1]: the bits of
/// `addReLU(batchNormalized(input, ...), scaledBy: scale, residual)`, in one pass over `input` and
/// `residual` where that makes two and writes the normalised map.
public func batchNormAddReLU(
  _ input: Tensor, mean: Tensor, variance: Tensor, weight: Tensor?, bias: Tensor?, epsilon: Double, scaledBy scale: Tensor,
  adding residual: Tensor
) -> Tensor {
  checkChannels("batchNormAddReLU", input, [("mean", mean), ("variance", variance), ("weight", weight), ("bias", bias)])
  checkMatches("batchNormAddReLU", input, [("residual", residual)])
  guard let planes = excitationPlanes(input, scale, [residual]) else {
    let y = batchNormalized(input, mean: mean, variance: variance, weight: weight, bias: bias, epsilon: epsilon)
    return addReLU(y, scaledBy: scale, residual)
  }
  let x = input, out = Tensor(uninitializedShape: x.shape, dtype: x.dtype, strides: x.strides)
  let length = planes.length
  func kernel<T: TensorScalar>(_: T.Type) {
    let affine = coefficients(mean, variance, weight, bias, epsilon, T.self)
    let px = x.base(T.self), pr = residual.base(T.self), pf = scale.base(T.self), py = out.base(T.self)
    Parallel.forRanges(planes.count, costPerItem: 3 * length) { range in
      for p in range {
        let (offset, factor, channel) = planes.offsets(p), (a, b) = affine[channel], s = pf[factor]
        let source = px + offset, r = pr + offset, y = py + offset
        for i in 0..<length {
          let v = (source[i] * a + b) * s + r[i]
          y[i] = v > 0 ? v : 0
        }
      }
    }
  }
  x.dtype.dispatch(kernel, kernel)
  return out
}

/// The first half of the gradients of ``batchNormAddReLU(_:mean:variance:weight:bias:epsilon:scaledBy:adding:)``
/// from the gradient of its output: g, the gradient where the ReLU passes it and 0 elsewhere, which
/// is the residual's gradient, and the scale's, the sum of g times the normalised input over each
/// plane (laid out as ``addReLUBackward(_:_:scaledBy:_:)`` lays it out). The normalised input's
/// gradient is g · scale; ``batchNormBackward(_:_:mean:variance:weight:epsilon:scaledBy:shiftedBy:)``
/// takes g and `scale` for it, so that it is never written. The bits of `addReLUBackward`'s.
public func batchNormAddReLUBackward(
  _ gradient: Tensor, _ input: Tensor, mean: Tensor, variance: Tensor, weight: Tensor?, bias: Tensor?, epsilon: Double,
  scaledBy scale: Tensor, adding residual: Tensor
) -> (residual: Tensor, scale: Tensor) {
  checkChannels("batchNormAddReLUBackward", input, [("mean", mean), ("variance", variance), ("weight", weight), ("bias", bias)])
  checkMatches("batchNormAddReLUBackward", input, [("residual", residual), ("gradient", gradient)])
  guard let planes = excitationPlanes(input, scale, [gradient, residual]) else {
    let y = batchNormalized(input, mean: mean, variance: variance, weight: weight, bias: bias, epsilon: epsilon)
    let g = addReLUBackward(gradient, y, scaledBy: scale, residual)
    return (g.b, g.scale)
  }
  let x = input, length = planes.length
  let masked = Tensor(uninitializedShape: x.shape, dtype: x.dtype, strides: x.strides)
  let sums = Tensor(uninitializedShape: scale.shape, dtype: x.dtype, strides: planes.sumStrides)
  func kernel<T: TensorScalar>(_: T.Type) {
    let affine = coefficients(mean, variance, weight, bias, epsilon, T.self)
    let pg = gradient.base(T.self), px = x.base(T.self), pr = residual.base(T.self), pf = scale.base(T.self)
    let pm = masked.base(T.self), ps = sums.base(T.self)
    Parallel.forRanges(planes.count, costPerItem: 3 * length) { range in
      for p in range {
        let (offset, factor, channel) = planes.offsets(p), (a, b) = affine[channel], s = pf[factor]
        let g = pg + offset, source = px + offset, r = pr + offset, out = pm + offset
        for i in 0..<length {
          let (sum, incoming) = ((source[i] * a + b) * s + r[i], g[i])
          out[i] = sum > 0 ? incoming : 0
        }
        ps[p] = rowDot(out, source, length, scale: a, shift: b)
      }
    }
  }
  x.dtype.dispatch(kernel, kernel)
  return (masked, sums)
}
