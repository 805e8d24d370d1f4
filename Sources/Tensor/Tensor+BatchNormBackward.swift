/// The backward pass of batch normalisation with batch statistics, and the fused ReLU's mask it
/// recomputes: the gradients of the input, the weight and the bias from two passes over each
/// channel, one that sums and one that writes.

/// The gradients of training-mode batch normalisation (batch statistics that depend on the input)
/// with respect to the input, the weight and the bias.
///
/// - `mean`: the batch mean used in the forward pass.
/// - `variance`: the biased batch variance used in the forward pass.
/// - `bias`: the forward pass's bias; only the ReLU's mask depends on it.
/// - `applyingReLU`: for a fused batch norm and ReLU: the gradient passes only where the normalised
///   value was positive, recomputed from the input on the fly (no mask or output is read).
/// - `ceiling`: for a ReLU capped at `ceiling` (ReLU6): the gradient passes only where the
///   normalised value lay strictly between 0 and `ceiling`, as ``clampBackward(_:input:min:max:)``.
public func batchNormBackward(
  _ gradOutput: Tensor, _ input: Tensor, mean: Tensor, variance: Tensor, weight: Tensor?, bias: Tensor? = nil,
  epsilon: Double, applyingReLU: Bool = false, ceiling: Double? = nil
) -> (input: Tensor, weight: Tensor, bias: Tensor) {
  let g = batchNormBackward(gradOutput, input, mean, variance, weight, bias, epsilon, applyingReLU, ceiling, nil, residual: nil)
  return (g.input!, g.weight, g.bias)
}

/// ``batchNormBackward(_:_:mean:variance:weight:bias:epsilon:applyingReLU:ceiling:)`` with the input
/// gradient written or added into `destination` instead of a new tensor (see
/// ``GradientDestination``); returns the weight and bias gradients.
public func batchNormBackward(
  _ gradOutput: Tensor, _ input: Tensor, mean: Tensor, variance: Tensor, weight: Tensor?, bias: Tensor? = nil,
  epsilon: Double, applyingReLU: Bool = false, ceiling: Double? = nil, into destination: GradientDestination
) -> (weight: Tensor, bias: Tensor) {
  let g = batchNormBackward(gradOutput, input, mean, variance, weight, bias, epsilon, applyingReLU, ceiling, destination, residual: nil)
  return (g.weight, g.bias)
}

/// ``batchNormBackward(_:_:mean:variance:weight:bias:epsilon:applyingReLU:ceiling:)`` (without a
/// ReLU) of the gradient `gradOutput · scale + shift`, with one `scale` and one `shift` per image and
/// channel ([N, C, 1, 1] or [N, C]; a squeeze-and-excitation scale and the gradient of its pooled
/// map): each element is computed as it is read, `gradOutput · scale` rounded and then `+ shift`
/// rounded, so that the results have the bits of that gradient written out first and passed in.
public func batchNormBackward(
  _ gradOutput: Tensor, _ input: Tensor, mean: Tensor, variance: Tensor, weight: Tensor?, epsilon: Double, scaledBy scale: Tensor,
  shiftedBy shift: Tensor
) -> (input: Tensor, weight: Tensor, bias: Tensor) {
  let g = batchNormBackward(
    gradOutput, input, mean, variance, weight, nil, epsilon, false, nil, nil, residual: nil, planeAffine: (scale, shift))
  return (g.input!, g.weight, g.bias)
}

/// ``batchNormBackward(_:_:mean:variance:weight:epsilon:scaledBy:shiftedBy:)`` with the input
/// gradient written or added into `destination` (see ``GradientDestination``); returns the weight
/// and bias gradients.
public func batchNormBackward(
  _ gradOutput: Tensor, _ input: Tensor, mean: Tensor, variance: Tensor, weight: Tensor?, epsilon: Double, scaledBy scale: Tensor,
  shiftedBy shift: Tensor, into destination: GradientDestination
) -> (weight: Tensor, bias: Tensor) {
  let g = batchNormBackward(
    gradOutput, input, mean, variance, weight, nil, epsilon, false, nil, destination, residual: nil, planeAffine: (scale, shift))
  return (g.weight, g.bias)
}

/// The shared backward pass. With `residual`, the normalisation was followed by the sum with a
/// residual and a ReLU (``batchNormalized(_:mean:variance:weight:bias:epsilon:adding:applyingReLU:)``):
/// the gradient passes where the sum's `output` is positive, and the masked gradient, which is also
/// the residual's, is written into `residual.gradient` (laid out like the input) by the pass that
/// sums it, then read back for the input gradient. With `planeAffine`, the gradient at image n and
/// channel c is `gradOutput · scale[n, c] + shift[n, c]`, computed where it is read.
func batchNormBackward(
  _ gradOutput: Tensor, _ input: Tensor, _ mean: Tensor, _ variance: Tensor, _ weight: Tensor?, _ bias: Tensor?,
  _ epsilon: Double, _ applyingReLU: Bool, _ ceiling: Double?, _ destination: GradientDestination?,
  residual: (output: Tensor, gradient: Tensor)?, planeAffine: (scale: Tensor, shift: Tensor)? = nil
) -> (input: Tensor?, weight: Tensor, bias: Tensor) {
  checkChannels("batchNormBackward", input, [("mean", mean), ("variance", variance), ("weight", weight), ("bias", bias)])
  checkCeiling("batchNormBackward", applyingReLU, ceiling)
  require(gradOutput.shape == input.shape, "batchNormBackward: gradient \(gradOutput.shape) does not match input \(input.shape)")
  let x = input.denseWithPlanes(), channels = x.shape[1]
  if let (scale, shift) = planeAffine {
    let planes = [x.shape[0], channels]
    require(
      [scale, shift].allSatisfy { ($0.shape == planes || $0.shape == planes + [1, 1]) && $0.dtype == x.dtype } && !applyingReLU
        && residual == nil,
      "batchNormBackward: scale \(scale.shape) and shift \(shift.shape) (\(scale.dtype)) do not give one value per image and channel of \(x.shape)")
  }
  let dy = gradOutput.laidOut(like: x.strides)
  destination?.check(against: x)
  let dx = destination == nil ? Tensor(uninitializedShape: x.shape, dtype: x.dtype, strides: x.strides) : nil
  let dw = Tensor(uninitializedShape: [channels], dtype: x.dtype), db = Tensor(uninitializedShape: [channels], dtype: x.dtype)
  let synchronization = BatchNormSynchronization.current
  func kernel<T: TensorScalar>(_: T.Type) {
    let pm = mean.contiguous().base(T.self), pv = variance.contiguous().base(T.self)
    let pw = weight?.contiguous().base(T.self), pb = bias?.contiguous().base(T.self)
    let pdw = dw.base(T.self), pdb = db.base(T.self)
    let local = max(1, x.count / max(1, channels))
    let m = T(synchronization?.globalCount(local) ?? local)
    let xOffset = x.base(T.self) - dy.base(T.self)
    // The residual sum's output and the masked gradient, at these distances from the gradient.
    let residualOffsets = residual.map { ($0.output.base(T.self) - dy.base(T.self), $0.gradient.base(T.self) - dy.base(T.self)) }
    // The ReLU after the residual sum, read at its output (positive exactly where the sum was):
    // `reluBackward`'s mask, as the identity normalisation of a fused ReLU's.
    let outputMask = ReLUMask<T>(scale: 1, shift: 0, ceiling: .infinity)
    // Per channel: how far its gradient lies from its output gradient, and whether it is added.
    let targets: [(offset: Int, adding: Bool)] =
      destination?.channelTargets(dy, T.self) ?? Array(repeating: (dx!.base(T.self) - dy.base(T.self), false), count: channels)
    // The ReLU's mask: where the normalised value lies in (0, ceiling), ceiling +∞ for a plain ReLU.
    let top = T(ceiling ?? .infinity)
    func reluOf(_ c: Int) -> ReLUMask<T>? {
      guard applyingReLU else { return nil }
      let (scale, shift) = affineCoefficients(mean: pm[c], variance: pv[c], weight: pw?[c], bias: pb?[c], epsilon: epsilon)
      return ReLUMask(scale: scale, shift: shift, ceiling: top)
    }
    func invStd(_ c: Int) -> T { 1 / (pv[c] + T(epsilon)).squareRoot() }
    // With a plane affine: its factors and shifts, channel by channel ([C][N]), and a plane's length.
    let images = x.shape[0], planeLength = x.shape[2] * x.shape[3]
    let affine = planeAffine.map { a -> (factors: [T], shifts: [T]) in
      let (f, t) = (a.scale.base(T.self), a.shift.base(T.self))
      let (fs, ts) = ((a.scale.strides[0], a.scale.strides[1]), (a.shift.strides[0], a.shift.strides[1]))
      let places = (0..<channels * images).map { ($0 % images, $0 / images) }
      return (places.map { n, c in f[n * fs.0 + c * fs.1] }, places.map { n, c in t[n * ts.0 + c * ts.1] })
    }
    // Σ dy and Σ dy·(x - μ) of channel c, which also give its bias and weight gradients.
    func sums(_ c: Int) -> (sumDy: T, sumDyCentered: T) {
      var planeSums = (sum: 0.0, dot: 0.0), plane = c * images
      let relu = reluOf(c)
      forEachPlane(of: dy, channel: c, T.self) { g, n in
        let sums: (sum: T, dot: T)
        if let affine {
          sums = affine.factors.withUnsafeBufferPointer { f in
            affine.shifts.withUnsafeBufferPointer { t in
              rowAffineGradientSums(g, g + xOffset, n, around: pm[c], planeLength: planeLength, f.baseAddress! + plane, t.baseAddress! + plane)
            }
          }
          plane += n / planeLength
        } else {
          sums =
            residualOffsets.map { rowGradientSums(g, g + xOffset, n, around: pm[c], reluOf: outputMask, at: g + $0.0, storingIn: g + $0.1) }
            ?? rowGradientSums(g, g + xOffset, n, around: pm[c], reluOf: relu)
        }
        planeSums = (planeSums.sum + Double(sums.sum), planeSums.dot + Double(sums.dot))
      }
      pdb[c] = T(planeSums.sum)
      pdw[c] = T(planeSums.dot) * invStd(c)
      return (T(planeSums.sum), T(planeSums.dot))
    }
    // The input gradient of channel c from the sums over the (global) batch.
    func inputGradient(_ c: Int, sumDy: T, sumDyCentered: T) {
      let mu = pm[c], invStd = invStd(c), relu = reluOf(c)
      let sumDyXhat = sumDyCentered * invStd
      let k = (pw?[c] ?? 1) * invStd / m, scaledXhat = invStd * sumDyXhat, (dxOffset, adding) = targets[c]
      if let affine {
        var plane = c * images
        forEachPlane(of: dy, channel: c, T.self) { dyPlane, n in
          for q in 0..<(planeLength == 0 ? 0 : n / planeLength) {
            let (f, t) = (affine.factors[plane + q], affine.shifts[plane + q])
            let g = dyPlane + q * planeLength, src = g + xOffset, out = g + dxOffset
            // dy · f and then + t rounded as the gradient written out would be.
            if adding {
              for i in 0..<planeLength { out[i] = out[i] + k * (m * (g[i] * f + t) - sumDy - (src[i] - mu) * scaledXhat) }
            } else {
              for i in 0..<planeLength { out[i] = k * (m * (g[i] * f + t) - sumDy - (src[i] - mu) * scaledXhat) }
            }
          }
          plane += planeLength == 0 ? 0 : n / planeLength
        }
        return
      }
      forEachPlane(of: dy, channel: c, T.self) { dyPlane, n in
        // After a residual sum the masked gradient, which the sums' pass stored, stands for dy.
        let g = dyPlane + (residualOffsets?.1 ?? 0)
        let src = dyPlane + xOffset, out = dyPlane + dxOffset
        // g and x are both loaded unconditionally, so that the loops vectorise; an added gradient
        // is summed as `old + new`, as accumulating a separate gradient tensor would.
        switch (relu, adding) {
        case (let mask?, false):
          for i in 0..<n {
            let gi = g[i], xi = src[i]
            out[i] = k * (m * mask.gradient(gi, at: xi) - sumDy - (xi - mu) * scaledXhat)
          }
        case (let mask?, true):
          for i in 0..<n {
            let gi = g[i], xi = src[i]
            out[i] = out[i] + k * (m * mask.gradient(gi, at: xi) - sumDy - (xi - mu) * scaledXhat)
          }
        case (nil, false):
          for i in 0..<n { out[i] = k * (m * g[i] - sumDy - (src[i] - mu) * scaledXhat) }
        case (nil, true):
          for i in 0..<n { out[i] = out[i] + k * (m * g[i] - sumDy - (src[i] - mu) * scaledXhat) }
        }
      }
    }
    guard let synchronization else {
      // Both passes over a channel back to back, while it is in cache.
      forEachChannel(x) { c in
        let s = sums(c)
        inputGradient(c, sumDy: s.sumDy, sumDyCentered: s.sumDyCentered)
      }
      return
    }
    var global = [Double](repeating: 0, count: 2 * channels)
    global.withUnsafeMutableBufferPointer { g in
      forEachChannel(x) { c in
        let s = sums(c)
        (g[c], g[channels + c]) = (Double(s.sumDy), Double(s.sumDyCentered))
      }
    }
    synchronization.synchronizer.sumAcrossProcesses(&global)
    forEachChannel(x) { c in inputGradient(c, sumDy: T(global[c]), sumDyCentered: T(global[channels + c])) }
  }
  x.dtype.dispatch(kernel, kernel)
  return (dx, dw, db)
}

/// A fused ReLU's mask, recomputed from the input: the gradient passes where the normalised value
/// `x * scale + shift` lies strictly between 0 and `ceiling` (+∞ for a plain ReLU).
struct ReLUMask<T: TensorScalar> {
  var scale, shift, ceiling: T

  /// `g` where the normalised `x` is inside, else 0. One comparison of min(v, ceiling - v) with 0
  /// (ceiling - v is positive exactly where v < ceiling, and NaN gives false), so that the loops over
  /// it vectorise as the plain ReLU's did; `v > 0 && v < ceiling` kept them scalar, with branches.
  /// With a ceiling of +∞ it is the plain ReLU's `v > 0`, at v = +∞ too.
  @inline(__always)
  func gradient(_ g: T, at x: T) -> T {
    let v = x * scale + shift
    return Swift.min(v, ceiling - v) > 0 ? g : 0
  }
}

/// The sum of `g[i]` and of `g[i] * (x[i] - center)` over `n` contiguous elements in one pass,
/// each blocked like ``rowSum(_:_:)``; with `reluOf`, `g[i]` counts as 0 wherever the mask of a ReLU
/// after the normalisation blocks it, the mask being read at `x[i]`, or at `maskInput[i]` when
/// given; with `stored` (which needs `reluOf`: only a masked gradient is worth keeping), the
/// masked `g[i]` are also written there.
///
/// The masked lanes are built element by element from unconditional loads: that form vectorises,
/// where a generic `SIMD8.replacing(with:where:)` runs lane by lane through memory.
@inline(__always)
func rowGradientSums<T: TensorScalar>(
  _ g: UnsafePointer<T>, _ x: UnsafePointer<T>, _ n: Int, around center: T, reluOf relu: ReLUMask<T>?,
  at maskInput: UnsafePointer<T>? = nil, storingIn stored: UnsafeMutablePointer<T>? = nil
) -> (sum: T, dot: T) {
  assert(stored == nil || relu != nil, "rowGradientSums: storing needs a mask; the unmasked loop does not store")
  var sums = BlockedLanes<T>(), dots = BlockedLanes<T>()
  let c = SIMD8<T>(repeating: center), size = MemoryLayout<T>.stride
  let rg = UnsafeRawPointer(g), rx = UnsafeRawPointer(x), m = maskInput ?? x
  var i = 0
  if let mask = relu {
    while i + 8 <= n {
      var vg = SIMD8<T>(repeating: 0)
      for l in 0..<8 { vg[l] = mask.gradient(g[i + l], at: m[i + l]) }
      // The same every iteration: a branch that is always predicted.
      if let stored { UnsafeMutableRawPointer(stored).storeBytes(of: vg, toByteOffset: i * size, as: SIMD8<T>.self) }
      sums.add(vg)
      dots.add(vg * (rx.loadUnaligned(fromByteOffset: i * size, as: SIMD8<T>.self) - c))
      i += 8
    }
  } else {
    while i + 8 <= n {
      let vg = rg.loadUnaligned(fromByteOffset: i * size, as: SIMD8<T>.self)
      sums.add(vg)
      dots.add(vg * (rx.loadUnaligned(fromByteOffset: i * size, as: SIMD8<T>.self) - c))
      i += 8
    }
  }
  var sum = sums.sum, dot = dots.sum
  while i < n {
    let gl = g[i], xl = x[i], ml = m[i]
    let gi = relu.map { $0.gradient(gl, at: ml) } ?? gl
    stored?[i] = gi
    sum += gi
    dot += gi * (xl - center)
    i += 1
  }
  return (sum, dot)
}

/// ``rowGradientSums(_:_:_:around:reluOf:at:storingIn:)`` without a mask of `g[i] · factors[q] +
/// shifts[q]`, q the plane of element i (`planeLength` elements a plane, the row starting at a
/// plane's start), each rounded as written: the bits of those values stored and summed.
@inline(__always)
func rowAffineGradientSums<T: TensorScalar>(
  _ g: UnsafePointer<T>, _ x: UnsafePointer<T>, _ n: Int, around center: T, planeLength: Int, _ factors: UnsafePointer<T>,
  _ shifts: UnsafePointer<T>
) -> (sum: T, dot: T) {
  var sums = BlockedLanes<T>(), dots = BlockedLanes<T>()
  let c = SIMD8<T>(repeating: center), size = MemoryLayout<T>.stride
  let rg = UnsafeRawPointer(g), rx = UnsafeRawPointer(x)
  // Element i lies in plane q, which ends before element `end` (followed as i goes, without a
  // division per vector).
  var i = 0, q = 0, end = planeLength
  while i + 8 <= n {
    while i >= end { (q, end) = (q + 1, end + planeLength) }
    var f = SIMD8<T>(repeating: factors[q]), t = SIMD8<T>(repeating: shifts[q])
    if i + 8 > end {  // A vector across planes (planes of a length that is not a multiple of 8).
      var (lane, laneEnd) = (q, end)
      for l in 0..<8 {
        while i + l >= laneEnd { (lane, laneEnd) = (lane + 1, laneEnd + planeLength) }
        (f[l], t[l]) = (factors[lane], shifts[lane])
      }
    }
    let vg = rg.loadUnaligned(fromByteOffset: i * size, as: SIMD8<T>.self) * f + t
    sums.add(vg)
    dots.add(vg * (rx.loadUnaligned(fromByteOffset: i * size, as: SIMD8<T>.self) - c))
    i += 8
  }
  var sum = sums.sum, dot = dots.sum
  while i < n {
    while i >= end { (q, end) = (q + 1, end + planeLength) }
    let gi = g[i] * factors[q] + shifts[q]
    sum += gi
    dot += gi * (x[i] - center)
    i += 1
  }
  return (sum, dot)
}
