/// Shape operations: views where the layout allows, copies otherwise.
extension Tensor {
  /// This tensor in row-major layout: itself when already contiguous, else a copy.
  public func contiguous() -> Tensor { isContiguous ? self : copied() }

  /// A copy with its own storage, laid out with `strides` (row-major when `nil`; must be dense).
  public func copied(strides: [Int]? = nil) -> Tensor {
    var result = Tensor(uninitializedShape: shape, dtype: dtype, strides: strides)
    result.assign(from: self)
    return result
  }

  /// This tensor with the dense layout that `like` uses: itself when it already has that layout,
  /// else a copy. Kernels use it to bring operands into one memory order.
  public func laidOut(like strides: [Int]) -> Tensor {
    let target = Shape.denseStrides(shape, like: strides)
    return Shape.sameLayout(shape, self.strides, target) ? self : copied(strides: target)
  }

  /// Copies the elements of `source` (same shape; converted if its dtype differs) into this tensor.
  mutating func assign(from source: Tensor) {
    require(source.shape == shape, "assign: shapes \(source.shape) and \(shape) differ")
    let loop = StridedLoop(shape: shape, strides: [source.strides, strides])
    switch (source.dtype, dtype) {
    case (.float32, .float32): copyRows(loop, source.base(Float.self), base(Float.self))
    case (.float64, .float64): copyRows(loop, source.base(Double.self), base(Double.self))
    case (.float32, .float64): copyRows(loop, source.base(Float.self), base(Double.self))
    case (.float64, .float32): copyRows(loop, source.base(Double.self), base(Float.self))
    }
  }

  /// This tensor converted to `dtype` (itself when it already has it).
  public func converted(to dtype: DType) -> Tensor {
    if dtype == self.dtype { return self }
    var result = Tensor(uninitializedShape: shape, dtype: dtype, strides: Shape.denseStrides(shape, like: strides))
    result.assign(from: self)
    return result
  }

  fileprivate func reshaped(to newShape: [Int]) -> Tensor {
    var target = newShape
    if let i = target.firstIndex(of: -1) {
      let known = target.enumerated().filter { $0.offset != i }.reduce(1) { $0 * $1.element }
      require(known > 0 && count % known == 0, "reshaped: cannot infer -1 reshaping \(shape) to \(newShape)")
      target[i] = count / known
    }
    require(
      target.allSatisfy { $0 >= 0 } && target.reduce(1, *) == count,
      "reshaped: cannot reshape \(shape) (\(count) elements) to \(newShape)")
    if let viewStrides = Shape.viewStrides(shape, strides, as: target) {
      return Tensor(storage: storage, shape: target, strides: viewStrides, offset: offset)
    }
    let source = contiguous()
    return Tensor(storage: source.storage, shape: target, strides: Shape.contiguousStrides(target), offset: source.offset)
  }

  fileprivate func permuted(_ order: [Int]) -> Tensor {
    require(
      order.sorted() == Array(0..<rank), "permuted: \(order) is not a permutation of the axes of \(shape)")
    return Tensor(storage: storage, shape: order.map { shape[$0] }, strides: order.map { strides[$0] }, offset: offset)
  }

  fileprivate func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
    let a = Shape.axis(a, rank: rank, "transposed"), b = Shape.axis(b, rank: rank, "transposed")
    var order = Array(0..<rank)
    order.swapAt(a, b)
    return permuted(order)
  }

  fileprivate func sliced(_ range: Range<Int>, alongAxis axis: Int) -> Tensor {
    let a = Shape.axis(axis, rank: rank, "sliced")
    require(
      range.lowerBound >= 0 && range.upperBound <= shape[a],
      "sliced: range \(range) is out of bounds for axis \(axis) of shape \(shape)")
    var newShape = shape
    newShape[a] = range.count
    return Tensor(storage: storage, shape: newShape, strides: strides, offset: offset + range.lowerBound * strides[a])
  }

  fileprivate func broadcast(to target: [Int]) -> Tensor {
    require(
      target.count >= rank && Shape.broadcast(shape, target) == target,
      "broadcast: shape \(shape) does not broadcast to \(target)")
    return Tensor(storage: storage, shape: target, strides: Shape.broadcastStrides(shape, strides, to: target), offset: offset)
  }

  fileprivate static func concatenate(_ tensors: [Tensor], alongAxis axis: Int) -> Tensor {
    require(!tensors.isEmpty, "concatenate: no tensors")
    let first = tensors[0]
    let a = Shape.axis(axis, rank: first.rank, "concatenate")
    for t in tensors {
      var s = t.shape, f = first.shape
      if t.rank == first.rank { s[a] = 0; f[a] = 0 }
      require(
        s == f && t.dtype == first.dtype,
        "concatenate: shapes \(tensors.map(\.shape)) (dtypes \(tensors.map(\.dtype))) do not fit along axis \(axis)")
    }
    var shape = first.shape
    shape[a] = tensors.reduce(0) { $0 + $1.shape[a] }
    let result = Tensor(uninitializedShape: shape, dtype: first.dtype, strides: Shape.denseStrides(shape, like: first.strides))
    var start = 0
    for t in tensors {
      var part = slice(result, start..<start + t.shape[a], alongAxis: a)
      part.assign(from: t)
      start += t.shape[a]
    }
    return result
  }

  fileprivate func split(sizes: [Int], alongAxis axis: Int) -> [Tensor] {
    let a = Shape.axis(axis, rank: rank, "split")
    require(sizes.reduce(0, +) == shape[a] && sizes.allSatisfy { $0 >= 0 }, "split: sizes \(sizes) do not add up to axis \(axis) of shape \(shape)")
    var start = 0
    return sizes.map { size in
      defer { start += size }
      return sliced(start..<start + size, alongAxis: a)
    }
  }

  fileprivate func padded(_ padding: [(before: Int, after: Int)], value: Double = 0) -> Tensor {
    require(
      padding.count == rank && padding.allSatisfy { $0.before >= 0 && $0.after >= 0 },
      "padded: padding \(padding.map { [$0.before, $0.after] }) does not fit shape \(shape)")
    let newShape = zip(shape, padding).map { $0 + $1.before + $1.after }
    let result = Tensor(repeating: value, shape: newShape, dtype: dtype)
    var inner = result
    for (axis, p) in padding.enumerated() { inner = slice(inner, p.before..<p.before + shape[axis], alongAxis: axis) }
    inner.assign(from: self)
    return result
  }
}

/// Copies rows of a strided loop over (source, destination), converting the element type; the rows
/// (or the one row's elements) split between the threads, as the element-wise kernels split theirs:
/// a concatenation or a split's gradient otherwise ran on one thread while the others waited.
private func copyRows<S: TensorScalar, D: TensorScalar>(
  _ loop: StridedLoop, _ src: UnsafeMutablePointer<S>, _ dst: UnsafeMutablePointer<D>
) {
  let n = loop.rowLength, ss = loop.rowStride(0), ds = loop.rowStride(1)
  if loop.rowCount == 1 && ss == 1 && ds == 1 {
    Parallel.forRanges(n, costPerItem: 1) { r in for i in r { dst[i] = D(src[i]) } }
    return
  }
  Parallel.forRanges(loop.rowCount, costPerItem: n) { rows in
    loop.forEachRow(in: rows) { o in
      let s = src + o[0], d = dst + o[1]
      if ss == 1 && ds == 1 {
        for i in 0..<n { d[i] = D(s[i]) }
      } else if ss == 0 && ds == 1 {
        // A value broadcast along the row (a per-channel value over a plane): a fill, which the
        // strided loop below would do one element at a time.
        d.update(repeating: D(s[0]), count: n)
      } else {
        for i in 0..<n { d[i * ds] = D(s[i * ss]) }
      }
    }
  }
}

extension Tensor {
  /// Writes `source` into the elements this tensor views, in place, even when the storage is shared.
  ///
  /// This deliberately breaks value semantics for the one case that needs it: a growing buffer of
  /// feature maps (a dense block's) whose earlier channels are viewed by earlier layers while later
  /// channels are being written. The caller guarantees that no live view reads the written elements.
  package func overwrite(with source: Tensor) {
    var target = self
    target.assign(from: source)
  }

  /// A channel-major [N, C, H, W] tensor of uninitialised elements.
  package static func channelMajor(_ shape: [Int], dtype: DType) -> Tensor {
    Tensor(uninitializedShape: shape, dtype: dtype, strides: PlaneLayout.channelMajorStrides(shape))
  }
}

/// The same elements in row-major order with a new shape: a view when the layout allows it (see
/// ``Shape/viewStrides(_:_:as:)``), a contiguous copy otherwise. `shape` may contain one `-1`,
/// inferred from the element count.
///
/// - Precondition: the element counts agree.
public func reshape(_ x: Tensor, to shape: [Int]) -> Tensor {
  x.reshaped(to: shape)
}

/// A view with the dimensions reordered: dimension `i` of the result is dimension `order[i]`.
///
/// - Precondition: `order` is a permutation of `0..<rank`.
public func permute(_ x: Tensor, _ order: [Int]) -> Tensor {
  x.permuted(order)
}

/// A view with two dimensions swapped (the last two by default).
public func transpose(_ x: Tensor, _ a: Int = -2, _ b: Int = -1) -> Tensor {
  x.transposed(a, b)
}

/// A view of `range` along `axis`.
///
/// - Precondition: `range` lies within the axis.
public func slice(_ x: Tensor, _ range: Range<Int>, alongAxis axis: Int) -> Tensor {
  x.sliced(range, alongAxis: axis)
}

/// A view that repeats dimensions of size 1 (and prepends new leading ones) to reach `target`.
///
/// - Precondition: the shape broadcasts to `target`.
public func broadcast(_ x: Tensor, to shape: [Int]) -> Tensor {
  x.broadcast(to: shape)
}

/// The tensors joined along `axis`.
///
/// The result keeps the memory order of the first tensor, so channel-major feature maps
/// concatenated along channels are appended block after block.
/// - Precondition: all tensors have the same dtype, rank and sizes except along `axis`.
public func concatenate(_ tensors: [Tensor], alongAxis axis: Int) -> Tensor {
  Tensor.concatenate(tensors, alongAxis: axis)
}

/// Views of consecutive pieces of the given sizes along `axis`.
///
/// - Precondition: the sizes add up to the axis length.
public func split(_ x: Tensor, sizes: [Int], alongAxis axis: Int) -> [Tensor] {
  x.split(sizes: sizes, alongAxis: axis)
}

/// A copy with `padding[i].before` and `padding[i].after` elements of `value` added along axis `i`.
///
/// - Precondition: one pair per dimension, all non-negative.
public func pad(_ x: Tensor, _ padding: [(before: Int, after: Int)], value: Double = 0) -> Tensor {
  x.padded(padding, value: value)
}
