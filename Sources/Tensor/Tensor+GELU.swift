import CKernels

/// GELU (Hendrycks and Gimpel 2016), x Φ(x) with Φ the standard normal CDF, and its gradient.
///
/// As a composite of erf, affine and multiply it makes four passes and calls libm's `erff` per
/// element, and a Transformer applies it to its widest activations; so it is a kernel. Float32
/// takes the vectorised kernel of `RowKernels.c` when the processor has AVX2 and FMA; Float64 and
/// other processors use libm's `erfc`.

/// x Φ(x), element-wise (exact GELU, PyTorch's `approximate='none'`).
public func gelu(_ x: Tensor) -> Tensor {
  let input = x.isDense ? x : x.contiguous()
  let out = Tensor(uninitializedShape: input.shape, dtype: input.dtype, strides: input.strides)
  func kernel<T: TensorScalar>(_: T.Type) {
    let px = input.base(T.self), py = out.base(T.self)
    Parallel.forRanges(input.count, costPerItem: 16) { r in
      if usesVectorKernels(T.self) {
        reprise_gelu_f32(floats(px + r.lowerBound), floats(py + r.lowerBound), r.count)
      } else {
        for i in r { py[i] = px[i] * normalCDF(px[i]) }
      }
    }
  }
  input.dtype.dispatch(kernel, kernel)
  return out
}

/// The gradient of ``gelu(_:)`` at `x` for the output gradient `gradient`: g (Φ(x) + x φ(x)).
public func geluGradient(_ gradient: Tensor, input x: Tensor) -> Tensor {
  require(gradient.shape == x.shape && gradient.dtype == x.dtype,
    "geluGradient: gradient \(gradient.shape) (\(gradient.dtype)) does not match input \(x.shape) (\(x.dtype))")
  let input = x.isDense ? x : x.contiguous()
  let g = gradient.laidOut(like: input.strides)
  let out = Tensor(uninitializedShape: input.shape, dtype: input.dtype, strides: input.strides)
  func kernel<T: TensorScalar>(_: T.Type) {
    let px = input.base(T.self), pg = g.base(T.self), py = out.base(T.self)
    let density = T(1 / (2 * Double.pi).squareRoot())
    Parallel.forRanges(input.count, costPerItem: 24) { r in
      if usesVectorKernels(T.self) {
        reprise_gelu_backward_f32(floats(px + r.lowerBound), floats(pg + r.lowerBound), floats(py + r.lowerBound), r.count)
      } else {
        for i in r { py[i] = pg[i] * (normalCDF(px[i]) + px[i] * T.exp(-px[i] * px[i] / 2) * density) }
      }
    }
  }
  input.dtype.dispatch(kernel, kernel)
  return out
}

/// Φ(x) = erfc(-x/√2) / 2, accurate in both tails.
@inline(__always)
private func normalCDF<T: TensorScalar>(_ x: T) -> T { T.erfc(-x * T(0.5.squareRoot())) / 2 }
