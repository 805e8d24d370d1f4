/// Batch-normalisation kernels over the channels of [N, C, H, W] tensors.
///
/// Statistics are per channel over N, H and W. With channel-major feature maps each channel is one
/// contiguous row; any layout with dense planes works. Work is split by channel, so results are
/// deterministic for a given thread count.

/// Calls `body(c)` for every channel, split across threads.
///
/// A channel's results are its own, so the split decides only how long the thread done first waits
/// at the job's end: for half of what the other is still running, on average. Where a channel is
/// worth a claim (a few thousand values or more), the threads claim one channel at a time, not a
/// quarter of their share (docs/performance.md#speedup-factors).
func forEachChannel(_ x: Tensor, _ body: (Int) -> Void) {
  let channels = x.shape[1], cost = x.count / max(1, channels) * 3
  guard channels < 2 || cost < 32_768 else { return Parallel.run(channels, body) }
  Parallel.forRanges(channels, costPerItem: cost) { r in for c in r { body(c) } }
}

/// Calls `body(plane, count)` for each of the N dense planes of channel `c`.
@inline(__always)
func forEachPlane<T: TensorScalar>(of x: Tensor, channel c: Int, _: T.Type, _ body: (UnsafeMutablePointer<T>, Int) -> Void) {
  let p = x.base(T.self) + c * x.strides[1], size = x.shape[2] * x.shape[3]
  if x.shape[0] > 1 && x.strides[0] == size {  // channel-major: the channel is one row
    body(p, size * x.shape[0])
  } else {
    for n in 0..<x.shape[0] { body(p + n * x.strides[0], size) }
  }
}

func checkChannels(_ operation: String, _ x: Tensor, _ perChannel: [(String, Tensor?)]) {
  require(x.rank == 4, "\(operation): input must be [N, C, H, W], got \(x.shape)")
  for (name, t) in perChannel {
    guard let t else { continue }
    require(
      t.shape == [x.shape[1]] && t.dtype == x.dtype,
      "\(operation): \(name) has shape \(t.shape) (\(t.dtype)), expected [\(x.shape[1])] (\(x.dtype)) for input \(x.shape)")
  }
}

/// The per-channel mean and biased variance (divided by N * H * W) of `input` [N, C, H, W],
/// computed in two passes for accuracy.
///
/// Under ``withSynchronizedBatchStatistics(_:_:)`` they are those of the global batch: the sums of
/// every process are added, first for the mean and then, about the global mean, for the variance.
public func batchNormStatistics(_ input: Tensor) -> (mean: Tensor, variance: Tensor) {
  checkChannels("batchNormStatistics", input, [])
  let x = input.denseWithPlanes(), channels = x.shape[1]
  let mean = Tensor(uninitializedShape: [channels], dtype: x.dtype)
  let variance = Tensor(uninitializedShape: [channels], dtype: x.dtype)
  let synchronization = BatchNormSynchronization.current
  func kernel<T: TensorScalar>(_: T.Type) {
    let pm = mean.base(T.self), pv = variance.base(T.self), local = max(1, x.count / max(1, channels))
    // Planes' sums are added in Float64, as the blocks within a plane are (Summation.swift).
    func total(_ c: Int) -> Double {
      var total = 0.0
      forEachPlane(of: x, channel: c, T.self) { p, n in total += Double(rowSum(p, n)) }
      return total
    }
    func squares(_ c: Int, around mu: T) -> Double {
      var squares = 0.0
      forEachPlane(of: x, channel: c, T.self) { p, n in squares += Double(rowSumOfSquares(p, n, around: mu)) }
      return squares
    }
    guard let synchronization else {
      // Both passes over a channel back to back, while it is in cache.
      let m = Double(local)
      forEachChannel(x) { c in
        let mu = T(total(c) / m)
        pm[c] = mu
        pv[c] = T(squares(c, around: mu) / m)
      }
      return
    }
    // The global batch's: each pass's per-channel sums are added across the processes, the
    // counts with the first.
    var sums = [Double](repeating: 0, count: channels + 1)
    sums.withUnsafeMutableBufferPointer { s in forEachChannel(x) { c in s[c] = total(c) } }
    sums[channels] = Double(local)
    synchronization.sum(&sums, localCount: local)
    let m = max(1, sums[channels])
    for c in 0..<channels { pm[c] = T(sums[c] / m) }
    var centred = [Double](repeating: 0, count: channels)
    centred.withUnsafeMutableBufferPointer { s in forEachChannel(x) { c in s[c] = squares(c, around: pm[c]) } }
    synchronization.synchronizer.sumAcrossProcesses(&centred)
    for c in 0..<channels { pv[c] = T(centred[c] / m) }
  }
  x.dtype.dispatch(kernel, kernel)
  return (mean, variance)
}

/// `(x - mean) / sqrt(variance + epsilon) * weight + bias` per channel (weight 1 and bias 0 when
/// absent), in the input's plane layout; followed by max(·, 0) in the same pass when `applyingReLU`,
/// and by min(·, `ceiling`) too when a ceiling is given (ReLU6 with 6: `clamp(_:min:max:)` of the
/// normalised values from 0 to `ceiling`).
public func batchNormalized(
  _ input: Tensor, mean: Tensor, variance: Tensor, weight: Tensor?, bias: Tensor?, epsilon: Double,
  applyingReLU: Bool = false, ceiling: Double? = nil
) -> Tensor {
  checkChannels("batchNormalized", input, [("mean", mean), ("variance", variance), ("weight", weight), ("bias", bias)])
  checkCeiling("batchNormalized", applyingReLU, ceiling)
  let x = input.denseWithPlanes()
  let y = Tensor(uninitializedShape: x.shape, dtype: x.dtype, strides: x.strides)
  func kernel<T: TensorScalar>(_: T.Type) {
    forEachNormalizedRow(of: x, into: y, mean: mean, variance: variance, weight: weight, bias: bias, epsilon: epsilon) {
      (out: UnsafeMutablePointer<T>, src, n, scale, shift) in
      if let ceiling {
        let top = T(ceiling)
        for i in 0..<n { out[i] = Swift.min(Swift.max(src[i] * scale + shift, 0), top) }
      } else if applyingReLU {
        for i in 0..<n { out[i] = Swift.max(src[i] * scale + shift, 0) }
      } else {
        for i in 0..<n { out[i] = src[i] * scale + shift }
      }
    }
  }
  x.dtype.dispatch(kernel, kernel)
  return y
}

/// Calls `row(out, src, count, scale, shift)` for every dense row of every channel of `y`, split
/// across threads by channel, with `src` the same row of `x` (laid out like `y`) and the channel's
/// `scale` and `shift` (``affineCoefficients(mean:variance:weight:bias:epsilon:)``): the walk that
/// each normalised map's kernel shares, whatever it does with the normalised values.
func forEachNormalizedRow<T: TensorScalar>(
  of x: Tensor, into y: Tensor, mean: Tensor, variance: Tensor, weight: Tensor?, bias: Tensor?, epsilon: Double,
  _ row: (_ out: UnsafeMutablePointer<T>, _ src: UnsafePointer<T>, _ count: Int, _ scale: T, _ shift: T) -> Void
) {
  let pm = mean.contiguous().base(T.self), pv = variance.contiguous().base(T.self)
  let pw = weight?.contiguous().base(T.self), pb = bias?.contiguous().base(T.self)
  let offset = x.base(T.self) - y.base(T.self)
  forEachChannel(x) { c in
    let (scale, shift) = affineCoefficients(mean: pm[c], variance: pv[c], weight: pw?[c], bias: pb?[c], epsilon: epsilon)
    forEachPlane(of: y, channel: c, T.self) { out, n in row(out, out + offset, n, scale, shift) }
  }
}

/// The per-channel `scale` and `shift` of `x * scale + shift`, the normalisation as applied: one
/// definition, so that the backward pass recomputes a fused ReLU's mask bit for bit.
@inline(__always)
func affineCoefficients<T: TensorScalar>(mean: T, variance: T, weight: T?, bias: T?, epsilon: Double) -> (scale: T, shift: T) {
  let scale = (weight ?? 1) / (variance + T(epsilon)).squareRoot()
  return (scale, (bias ?? 0) - mean * scale)
}

/// Stops the program unless each of `others` has the shape and dtype of `x`.
func checkMatches(_ operation: String, _ x: Tensor, _ others: [(String, Tensor)]) {
  for (name, t) in others {
    require(
      t.shape == x.shape && t.dtype == x.dtype, "\(operation): \(name) \(t.shape) (\(t.dtype)) does not match input \(x.shape) (\(x.dtype))")
  }
}

/// Stops the program if a ceiling is given without the ReLU it caps.
func checkCeiling(_ operation: String, _ applyingReLU: Bool, _ ceiling: Double?) {
  require(ceiling == nil || applyingReLU, "\(operation): a ceiling caps the fused ReLU; pass applyingReLU: true with it")
}
