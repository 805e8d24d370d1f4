/// `relu(a · s + b)` with one factor of `s` per plane of `a`, and its gradients, each in one pass:
/// the end of a squeeze-and-excitation residual block (its channel scaling, the shortcut's sum and
/// the ReLU). Composed of ``Tensor/*(_:_:)-(Tensor,Tensor)`` and ``addReLU(_:_:)``, the forward
/// pass writes the scaled map and reads it back, and the backward pass writes the ReLU's gradient,
/// its product with `a` and reads both back to sum the product plane by plane; here each element
/// is read from memory once, a plane at a time. The results are those of the composition, bit for
/// bit.

/// The layout of the one-pass kernels, or `nil`: `scale` has one factor per plane of `a` (its shape
/// is a prefix of `a`'s followed by ones), each plane (the axes of those ones) is a contiguous
/// block of `length` elements, and the tensors beside `a` have its shape and strides. `offsets(p)`
/// is where plane `p` starts in `a` and its factor in `scale`, the planes counted in the order they
/// lie in memory, which is also the order of their sums under ``sumStrides``: plane `p`'s sum is
/// the `p`-th. Feature maps stored channel-major ([C][N][H][W]) qualify as row-major ones do;
/// their planes are counted channel by channel, so that a thread's range of planes is one stream
/// through memory (counted image by image, each plane of 8x8 floats of a batch of 128 lay 32 KiB
/// past the last, and every one began with a miss that the prefetchers had not foreseen).
struct Planes {
  let count: Int, length: Int
  /// The strides of the scale's gradient: its planes in the memory order of `a`'s, as a sum over
  /// the planes lays out its result (``Tensor/reducedTensor(_:keepingDimensions:)``), so that what
  /// reads it (the linear layers before the scale) sees the composition's layout and rounds alike.
  let sumStrides: [Int]
  /// The leading axes in memory order (outermost first), with their sizes and strides.
  private let axes: [Int], shape: [Int], strides: [Int], scaleStrides: [Int]

  init?(_ a: Tensor, _ scale: Tensor, _ others: [Tensor]) {
    let lead = scale.shape.lastIndex { $0 != 1 }.map { $0 + 1 } ?? 0
    let planeShape = Array(a.shape[lead...])
    guard scale.rank == a.rank, scale.dtype == a.dtype, Array(scale.shape[..<lead]) == Array(a.shape[..<lead]), a.isDense,
      planeShape.contains(0) || Array(a.strides[lead...]) == Shape.contiguousStrides(planeShape),
      others.allSatisfy({ $0.shape == a.shape && $0.strides == a.strides && $0.dtype == a.dtype })
    else { return nil }
    (count, length) = (scale.count, planeShape.reduce(1, *))
    axes = Shape.memoryOrder(a.shape, a.strides).filter { $0 < lead }
    (shape, strides, scaleStrides) = (axes.map { a.shape[$0] }, axes.map { a.strides[$0] }, axes.map { scale.strides[$0] })
    var sumStrides = [Int](repeating: 1, count: a.rank), step = 1
    for axis in axes.reversed() {
      sumStrides[axis] = step
      step *= a.shape[axis]
    }
    self.sumStrides = sumStrides
  }

  /// The start of plane `p` in `a` (and the tensors beside it), its factor's place in `scale` and
  /// its coordinate along axis 1 (its channel, for feature maps; 0 when the planes are not split
  /// along axis 1).
  func offsets(_ p: Int) -> (plane: Int, factor: Int, channel: Int) {
    var rest = p, plane = 0, factor = 0, channel = 0
    for i in shape.indices.reversed() {
      let (q, coordinate) = rest.quotientAndRemainder(dividingBy: shape[i])
      plane += coordinate * strides[i]
      factor += coordinate * scaleStrides[i]
      if axes[i] == 1 { channel = coordinate }
      rest = q
    }
    return (plane, factor, channel)
  }
}

/// `relu(a · scale + b)`, `scale` broadcast to `a` (one factor per image and channel, [N, C, 1, 1]
/// for feature maps [N, C, H, W], takes one pass; other shapes that broadcast take the composition).
/// The product is rounded before the sum, as in `addReLU(a * scale, b)`, whose bits it has.
public func addReLU(_ a: Tensor, scaledBy scale: Tensor, _ b: Tensor) -> Tensor {
  guard let planes = Planes(a, scale, [b]) else { return addReLU(a * scale, b) }
  let y = Tensor(uninitializedShape: a.shape, dtype: a.dtype, strides: a.strides), length = planes.length
  func kernel<T: TensorScalar>(_: T.Type) {
    let pa = a.base(T.self), ps = scale.base(T.self), pb = b.base(T.self), py = y.base(T.self)
    Parallel.forRanges(planes.count, costPerItem: 2 * length) { range in
      for p in range {
        let (offset, factor, _) = planes.offsets(p)
        let s = ps[factor], x = pa + offset, r = pb + offset, out = py + offset
        for i in 0..<length {
          let v = x[i] * s + r[i]
          out[i] = v > 0 ? v : 0
        }
      }
    }
  }
  a.dtype.dispatch(kernel, kernel)
  return y
}

/// The gradients of ``addReLU(_:scaledBy:_:)`` from the gradient of its output: with g the
/// gradient where a · scale + b is positive (where the output is) and 0 elsewhere, `a`'s is g ·
/// scale, `scale`'s the sum of g · a over each plane (over the axes along which `scale` is
/// broadcast), and `b`'s g. The sign is taken again from `a`, `scale` and `b`, rounded as in the
/// forward pass, rather than from the output: a residual block's `b` is its input, which its first
/// convolution keeps anyway, while its output is kept by the next block only until that block's
/// gradients are done, so it need not outlive them. The sums are blocked as
/// ``sum(_:alongAxes:keepingDimensions:)``'s are, so all three have the composition's bits.
public func addReLUBackward(_ gradient: Tensor, _ a: Tensor, scaledBy scale: Tensor, _ b: Tensor) -> (
  a: Tensor, scale: Tensor, b: Tensor
) {
  guard let planes = Planes(a, scale, [gradient, b]) else {
    let g = reluBackward(gradient, output: addReLU(a * scale, b))
    let axes = a.shape.indices.filter { scale.shape[$0] == 1 && a.shape[$0] != 1 }
    return (g * scale, reshape(sum(g * a, alongAxes: axes, keepingDimensions: true), to: scale.shape), g)
  }
  let ga = Tensor(uninitializedShape: a.shape, dtype: a.dtype, strides: a.strides)
  let gb = Tensor(uninitializedShape: a.shape, dtype: a.dtype, strides: a.strides)
  let gs = Tensor(uninitializedShape: scale.shape, dtype: a.dtype, strides: planes.sumStrides), length = planes.length
  func kernel<T: TensorScalar>(_: T.Type) {
    let pg = gradient.base(T.self), pb = b.base(T.self), pa = a.base(T.self), ps = scale.base(T.self)
    let pga = ga.base(T.self), pgb = gb.base(T.self), pgs = gs.base(T.self)
    Parallel.forRanges(planes.count, costPerItem: 3 * length) { range in
      for p in range {
        let (offset, factor, _) = planes.offsets(p)
        let s = ps[factor], g = pg + offset, x = pa + offset, r = pb + offset, ga = pga + offset, gb = pgb + offset
        // Three loops over a plane that stays in the L1 cache, each simple enough to vectorise
        // (with every load of the first unconditional): g, g · scale, and g · a summed as `sum`
        // sums a row (`rowDot` with no centre).
        for i in 0..<length {
          let (sum, incoming) = (x[i] * s + r[i], g[i])
          gb[i] = sum > 0 ? incoming : 0
        }
        for i in 0..<length { ga[i] = gb[i] * s }
        pgs[p] = rowDot(gb, x, length, around: 0)
      }
    }
  }
  a.dtype.dispatch(kernel, kernel)
  return (ga, gs, gb)
}
