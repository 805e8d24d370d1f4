import CKernels

/// Softmax and log-softmax along one axis, and their gradients, each one pass over rows.
///
/// Composed from max, subtract, exp, sum and divide, a softmax reads and writes its input five
/// times and allocates as often; attention computes one over every score, so it is a kernel here.
/// Float32 rows take the vectorised e^x of `RowKernels.c` when the processor has AVX2 and FMA.
extension Tensor {
  fileprivate func softmax(alongAxis axis: Int) -> Tensor { softmaxAlong(axis, logarithm: false, "softmax") }

  fileprivate func logSoftmax(alongAxis axis: Int) -> Tensor { softmaxAlong(axis, logarithm: true, "logSoftmax") }

  private func softmaxAlong(_ axis: Int, logarithm: Bool, _ operation: String) -> Tensor {
    let (rows, restore) = movingAxisLast(axis, operation)
    var out = Tensor(uninitializedShape: rows.shape, dtype: dtype)
    let length = rows.shape.last ?? 1, count = length == 0 ? 0 : rows.count / length
    func kernel<T: TensorScalar>(_: T.Type) {
      let x = rows.base(T.self), y = out.base(T.self)
      Parallel.forRanges(count, costPerItem: 8 * length) { r in
        softmaxRows(x + r.lowerBound * length, y + r.lowerBound * length, rows: r.count, length: length, logarithm: logarithm)
      }
    }
    dtype.dispatch(kernel, kernel)
    out = permute(out, restore)
    return out
  }

  /// This tensor with `axis` moved last and made contiguous, and the order that moves it back.
  func movingAxisLast(_ axis: Int, _ operation: String) -> (rows: Tensor, restore: [Int]) {
    let a = Shape.axis(axis, rank: rank, operation)
    let order = Array(0..<rank).filter { $0 != a } + [a]
    var restore = [Int](repeating: 0, count: rank)
    for (i, axis) in order.enumerated() { restore[axis] = i }
    return (permute(self, order).contiguous(), restore)
  }
}

/// The gradient of ``softmax(_:alongAxis:)`` (or, with `logarithm`, of
/// ``logSoftmax(_:alongAxis:)``) from its output and the output's gradient.
public func softmaxGradient(_ gradient: Tensor, output: Tensor, alongAxis axis: Int, logarithm: Bool) -> Tensor {
  require(gradient.shape == output.shape && gradient.dtype == output.dtype,
    "softmaxGradient: gradient \(gradient.shape) (\(gradient.dtype)) does not match output \(output.shape) (\(output.dtype))")
  let (y, restore) = output.movingAxisLast(axis, "softmaxGradient")
  let (g, _) = gradient.movingAxisLast(axis, "softmaxGradient")
  let out = Tensor(uninitializedShape: y.shape, dtype: y.dtype)
  let length = y.shape.last ?? 1, count = length == 0 ? 0 : y.count / length
  func kernel<T: TensorScalar>(_: T.Type) {
    let py = y.base(T.self), pg = g.base(T.self), po = out.base(T.self)
    Parallel.forRanges(count, costPerItem: 8 * length) { r in
      let start = r.lowerBound * length
      softmaxGradientRows(py + start, pg + start, po + start, rows: r.count, length: length, logarithm: logarithm)
    }
  }
  y.dtype.dispatch(kernel, kernel)
  return permute(out, restore)
}

/// Softmax (or log-softmax) of `rows` contiguous rows of `length` elements from `x` into `y`.
func softmaxRows<T: TensorScalar>(
  _ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, rows: Int, length: Int, logarithm: Bool
) {
  if usesVectorKernels(T.self) {
    reprise_softmax_rows_f32(floats(x), floats(y), rows, length, logarithm)
    return
  }
  guard length > 0 else { return }
  for row in 0..<rows {
    let (x, y) = (x + row * length, y + row * length)
    var peak = x[0]
    for i in 1..<length where x[i] > peak || x[i].isNaN { peak = x[i] }
    for i in 0..<length { y[i] = T.exp(x[i] - peak) }
    let total = rowSum(y, length)
    if logarithm {
      let logTotal = T.log(total)
      for i in 0..<length { y[i] = (x[i] - peak) - logTotal }
    } else {
      for i in 0..<length { y[i] /= total }
    }
  }
}

/// The gradient of `rows` softmax (or log-softmax) rows from their outputs `y` and the output
/// gradient `g`, into `result`.
func softmaxGradientRows<T: TensorScalar>(
  _ y: UnsafePointer<T>, _ g: UnsafePointer<T>, _ result: UnsafeMutablePointer<T>, rows: Int, length: Int, logarithm: Bool
) {
  if usesVectorKernels(T.self) {
    reprise_softmax_backward_rows_f32(floats(y), floats(g), floats(result), rows, length, logarithm)
    return
  }
  for row in 0..<rows {
    let (yr, gr, o) = (y + row * length, g + row * length, result + row * length)
    if logarithm {
      let total = rowSum(gr, length)
      for i in 0..<length { o[i] = gr[i] - T.exp(yr[i]) * total }
    } else {
      let total = rowDot(gr, yr, length, around: 0)
      for i in 0..<length { o[i] = yr[i] * (gr[i] - total) }
    }
  }
}

/// e^x / Σ e^x along `axis`, computed stably (shifted by the maximum along the axis).
public func softmax(_ x: Tensor, alongAxis axis: Int) -> Tensor {
  x.softmax(alongAxis: axis)
}

/// log(softmax(x)) along `axis`, computed stably.
public func logSoftmax(_ x: Tensor, alongAxis axis: Int) -> Tensor {
  x.logSoftmax(alongAxis: axis)
}
