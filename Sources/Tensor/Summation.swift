/// Long sums in the working precision, accurate at training sizes.
///
/// A per-channel statistic of a batch adds N·H·W terms: 65,536 for 64 images of 32x32. Eight lanes
/// that each add an eighth of them one after another carry 8,192 roundings in every lane, and the
/// error grows with that count: a Float32 mean of 100 + N(0, 1) came out several units in the last
/// place off. Here each lane adds `summationBlock / 8` terms into a fresh block accumulator in the
/// working precision, and the block sums are added into a Float64 accumulator: the working
/// precision's error grows with 64 additions instead of n / 8, at the cost of one conversion and
/// vector addition per block. The order of additions is fixed by `n` alone, so results stay
/// deterministic for any thread count.

/// Terms per block of a blocked sum (a multiple of 8).
let summationBlock = 512

/// Eight running sums that take one vector of terms at a time, in blocks of `summationBlock` terms.
struct BlockedLanes<T: TensorScalar> {
  private var block = SIMD8<T>(repeating: 0), total = SIMD8<Double>(repeating: 0)
  private var remaining = summationBlock / 8

  /// Adds one vector of eight terms, a term per lane.
  @inline(__always)
  mutating func add(_ terms: SIMD8<T>) {
    block += terms
    remaining -= 1
    if remaining == 0 {
      total += SIMD8<Double>(block)
      block = SIMD8(repeating: 0)
      remaining = summationBlock / 8
    }
  }

  /// The sum of every term added so far, rounded to the working precision.
  @inline(__always)
  var sum: T { T((total + SIMD8<Double>(block)).sum()) }
}

/// The sum of `n` contiguous elements (vectorised, blocked, deterministic).
@inline(__always)
func rowSum<T: TensorScalar>(_ p: UnsafePointer<T>, _ n: Int) -> T {
  var lanes = BlockedLanes<T>()
  let raw = UnsafeRawPointer(p), size = MemoryLayout<T>.stride
  var i = 0
  while i + 8 <= n {
    lanes.add(raw.loadUnaligned(fromByteOffset: i * size, as: SIMD8<T>.self))
    i += 8
  }
  var total = lanes.sum
  while i < n {
    total += p[i]
    i += 1
  }
  return total
}

/// The sum of `(p[i] - center)^2` over `n` contiguous elements.
@inline(__always)
func rowSumOfSquares<T: TensorScalar>(_ p: UnsafePointer<T>, _ n: Int, around center: T) -> T {
  rowDot(p, p, n, around: center, centerBoth: true)
}

/// The sum of `a[i] * (b[i] - center)` (or of `(a[i] - center) * (b[i] - center)` when
/// `centerBoth`) over `n` contiguous elements, blocked like ``rowSum(_:_:)``.
@inline(__always)
func rowDot<T: TensorScalar>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ n: Int, around center: T, centerBoth: Bool = false) -> T {
  var lanes = BlockedLanes<T>()
  let c = SIMD8<T>(repeating: center), ca = centerBoth ? c : SIMD8<T>(repeating: 0)
  let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b), size = MemoryLayout<T>.stride
  var i = 0
  while i + 8 <= n {
    let va = ra.loadUnaligned(fromByteOffset: i * size, as: SIMD8<T>.self)
    let vb = rb.loadUnaligned(fromByteOffset: i * size, as: SIMD8<T>.self)
    lanes.add((va - ca) * (vb - c))
    i += 8
  }
  var total = lanes.sum
  let shiftA = centerBoth ? center : 0
  while i < n {
    total += (a[i] - shiftA) * (b[i] - center)
    i += 1
  }
  return total
}

/// ``rowSum(_:_:)`` of `p[i] * scale + shift`, each rounded as written (a batch normalisation's
/// values, `batchNormalized`'s bits), without storing them.
@inline(__always)
func rowSum<T: TensorScalar>(_ p: UnsafePointer<T>, _ n: Int, scale: T, shift: T) -> T {
  var lanes = BlockedLanes<T>()
  let raw = UnsafeRawPointer(p), size = MemoryLayout<T>.stride
  let a = SIMD8<T>(repeating: scale), b = SIMD8<T>(repeating: shift)
  var i = 0
  while i + 8 <= n {
    lanes.add(raw.loadUnaligned(fromByteOffset: i * size, as: SIMD8<T>.self) * a + b)
    i += 8
  }
  var total = lanes.sum
  while i < n {
    total += p[i] * scale + shift
    i += 1
  }
  return total
}

/// ``rowDot(_:_:_:around:centerBoth:)`` around 0 with `b[i] * scale + shift` for `b[i]`, each
/// rounded as written, without storing them: the same bits as the product with those values stored.
@inline(__always)
func rowDot<T: TensorScalar>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ n: Int, scale: T, shift: T) -> T {
  var lanes = BlockedLanes<T>()
  let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b), size = MemoryLayout<T>.stride
  let f = SIMD8<T>(repeating: scale), s = SIMD8<T>(repeating: shift)
  var i = 0
  while i + 8 <= n {
    let va = ra.loadUnaligned(fromByteOffset: i * size, as: SIMD8<T>.self)
    let vb = rb.loadUnaligned(fromByteOffset: i * size, as: SIMD8<T>.self) * f + s
    lanes.add(va * vb)
    i += 8
  }
  var total = lanes.sum
  while i < n {
    total += a[i] * (b[i] * scale + shift)
    i += 1
  }
  return total
}
