/// An n-dimensional array of integer indices: which rows to select, which class is the label.
///
/// Indices are their own type rather than an integer `DType` of ``Tensor``: they are never
/// differentiated or multiplied, every arithmetic kernel would otherwise have to reject them, and
/// an index out of range must be caught where it is used, naming the operation. The values are
/// plain `Int`s in row-major order.
public struct IndexTensor: Sendable, Equatable, CustomStringConvertible {
  /// The shape.
  public let shape: [Int]
  /// The indices in row-major order.
  public let indices: [Int]

  /// Indices of the given shape (row-major).
  ///
  /// - Precondition: `indices.count` is the product of `shape`.
  public init(_ indices: [Int], shape: [Int]) {
    require(shape.allSatisfy { $0 >= 0 }, "IndexTensor: negative dimension in shape \(shape)")
    require(indices.count == shape.reduce(1, *), "IndexTensor: \(indices.count) indices do not fill shape \(shape)")
    (self.indices, self.shape) = (indices, shape)
  }

  /// A vector of indices.
  public init(_ indices: [Int]) { self.init(indices, shape: [indices.count]) }

  /// The number of indices.
  public var count: Int { indices.count }

  /// The shape and the first indices.
  public var description: String { "IndexTensor(shape: \(shape), indices: \(indices.prefix(8))\(indices.count > 8 ? "..." : ""))" }

  /// Stops naming `operation` unless every index is in `0..<bound`.
  func requireInRange(_ bound: Int, _ operation: String) {
    if let bad = indices.firstIndex(where: { $0 < 0 || $0 >= bound }) {
      fatalError("\(operation): index \(indices[bad]) at position \(bad) is out of range 0..<\(bound)")
    }
  }
}

extension Tensor {
  fileprivate func indexSelected(_ indices: IndexTensor, alongAxis axis: Int) -> Tensor {
    let (outer, _, inner, selection) = selectionLayout(shape, indices, axis, "indexSelect")
    let a = Shape.axis(axis, rank: shape.count, "indexSelect")
    // Each selected slice is read where it lies when the dimensions after the axis are laid out
    // contiguously (a channel selection from a feature buffer's window): copying the whole input
    // first would cost more than the selection.
    let after = Array(shape[(a + 1)...])
    let x = Array(strides[(a + 1)...]) == Shape.contiguousStrides(after) || inner <= 1 ? self : contiguous()
    var outerOffsets = [Int](repeating: 0, count: outer)
    for o in 0..<outer {
      var rest = o
      for d in stride(from: a - 1, through: 0, by: -1) {
        outerOffsets[o] += (rest % shape[d]) * x.strides[d]
        rest /= shape[d]
      }
    }
    let axisStride = x.strides[a]
    let out = Tensor(uninitializedShape: selection, dtype: dtype)
    let m = indices.count
    func kernel<T: TensorScalar>(_: T.Type) {
      let src = x.base(T.self), dst = out.base(T.self)
      Parallel.forRanges(outer * m, costPerItem: inner) { range in
        for r in range {
          let (o, j) = r.quotientAndRemainder(dividingBy: m)
          (dst + r * inner).update(from: src + outerOffsets[o] + indices.indices[j] * axisStride, count: inner)
        }
      }
    }
    dtype.dispatch(kernel, kernel)
    return out
  }

  fileprivate func indexAdded(_ indices: IndexTensor, alongAxis axis: Int, into shape: [Int]) -> Tensor {
    let (outer, length, inner, selection) = selectionLayout(shape, indices, axis, "indexAdd")
    require(self.shape == selection, "indexAdd: gradient \(self.shape) does not match selection \(selection)")
    let g = contiguous()
    let m = indices.count
    var selected = [Bool](repeating: false, count: length)
    let distinct = indices.indices.allSatisfy { index in
      defer { selected[index] = true }
      return !selected[index]
    }
    if distinct {
      // Each slice of the result receives at most one slice of the gradient (a channel selection's
      // pullback): contiguous copies, and zeros only where nothing lands. Adding 0 makes the bits
      // those of the sum into zeros (-0 becomes +0).
      let out = Tensor(uninitializedShape: shape, dtype: dtype)
      let unselected = (0..<length).filter { !selected[$0] }
      func copy<T: TensorScalar>(_: T.Type) {
        let src = g.base(T.self), dst = out.base(T.self)
        Parallel.forRanges(outer * length, costPerItem: inner) { range in
          for r in range {
            let (o, j) = r.quotientAndRemainder(dividingBy: length)
            if j < m {
              let from = src + (o * m + j) * inner, to = dst + (o * length + indices.indices[j]) * inner
              for i in 0..<inner { to[i] = from[i] + T.zero }
            } else if j - m < unselected.count {
              (dst + (o * length + unselected[j - m]) * inner).update(repeating: T.zero, count: inner)
            }
          }
        }
      }
      dtype.dispatch(copy, copy)
      return out
    }
    let out = Tensor(zeros: shape, dtype: dtype)
    func kernel<T: TensorScalar>(_: T.Type) {
      let src = g.base(T.self), dst = out.base(T.self)
      // Split over the outer dimension and over the inner one, never over the indices, so that each
      // element adds its contributions in index order whatever the thread count.
      Parallel.forRanges(outer * inner, costPerItem: m) { range in
        for r in range {
          let (o, i) = r.quotientAndRemainder(dividingBy: inner)
          for j in 0..<m { dst[(o * length + indices.indices[j]) * inner + i] += src[(o * m + j) * inner + i] }
        }
      }
    }
    dtype.dispatch(kernel, kernel)
    return out
  }

  fileprivate func gathered(_ indices: IndexTensor, alongAxis axis: Int) -> Tensor {
    let a = gatherCheck(indices, axis, shape, "gather")
    let x = contiguous()
    let strides = Shape.contiguousStrides(shape), positions = Shape.contiguousStrides(indices.shape)
    let out = Tensor(uninitializedShape: indices.shape, dtype: dtype)
    func kernel<T: TensorScalar>(_: T.Type) {
      let src = x.base(T.self), dst = out.base(T.self)
      for p in 0..<indices.count {
        dst[p] = src[Tensor.gatherSource(p, indices, a, positions, strides)]
      }
    }
    dtype.dispatch(kernel, kernel)
    return out
  }

  fileprivate func scatterAdded(_ indices: IndexTensor, alongAxis axis: Int, into shape: [Int]) -> Tensor {
    let a = gatherCheck(indices, axis, shape, "scatterAdd")
    require(self.shape == indices.shape, "scatterAdd: gradient \(self.shape) does not match indices \(indices.shape)")
    let g = contiguous()
    let strides = Shape.contiguousStrides(shape), positions = Shape.contiguousStrides(indices.shape)
    let out = Tensor(zeros: shape, dtype: dtype)
    func kernel<T: TensorScalar>(_: T.Type) {
      let src = g.base(T.self), dst = out.base(T.self)
      for p in 0..<indices.count { dst[Tensor.gatherSource(p, indices, a, positions, strides)] += src[p] }
    }
    dtype.dispatch(kernel, kernel)
    return out
  }

  /// The offset in a row-major tensor of `strides` that gather position `p` reads.
  private static func gatherSource(_ p: Int, _ indices: IndexTensor, _ axis: Int, _ positions: [Int], _ strides: [Int]) -> Int {
    var rest = p, offset = 0
    for d in 0..<positions.count {
      let (coordinate, remainder) = rest.quotientAndRemainder(dividingBy: positions[d])
      rest = remainder
      offset += (d == axis ? indices.indices[p] : coordinate) * strides[d]
    }
    return offset
  }
}

/// A tensor of `shape` seen as [outer, length, inner] around `axis`, and the shape of its selection
/// at `indices` (dimension `axis` replaced by theirs), after checking the indices.
private func selectionLayout(
  _ shape: [Int], _ indices: IndexTensor, _ axis: Int, _ operation: String
) -> (outer: Int, length: Int, inner: Int, selection: [Int]) {
  let a = Shape.axis(axis, rank: shape.count, operation)
  indices.requireInRange(shape[a], operation)
  let (before, after) = (Array(shape[..<a]), Array(shape[(a + 1)...]))
  return (before.reduce(1, *), shape[a], after.reduce(1, *), before + indices.shape + after)
}

/// Checks a gather's indices against `shape` and returns the normalised axis.
private func gatherCheck(_ indices: IndexTensor, _ axis: Int, _ shape: [Int], _ operation: String) -> Int {
  let a = Shape.axis(axis, rank: shape.count, operation)
  require(
    indices.shape.count == shape.count && zip(indices.shape, shape).enumerated().allSatisfy { $0.offset == a || $0.element.0 <= $0.element.1 },
    "\(operation): indices \(indices.shape) do not fit input \(shape) along axis \(axis) (same rank, no larger elsewhere)")
  indices.requireInRange(shape[a], operation)
  return a
}

/// The same indices in row-major order with a new shape.
public func reshape(_ x: IndexTensor, to shape: [Int]) -> IndexTensor { IndexTensor(x.indices, shape: shape) }

/// The slices at `indices` along `axis`: the result's shape is `x`'s shape with dimension `axis`
/// replaced by the indices' shape (NumPy's `take`; PyTorch's `index_select` for a vector of
/// indices, and an embedding lookup along axis 0).
public func indexSelect(_ x: Tensor, _ indices: IndexTensor, alongAxis axis: Int) -> Tensor {
  x.indexSelected(indices, alongAxis: axis)
}

/// The gradient of ``indexSelect(_:_:alongAxis:)``: `x` (of the selection's shape) added into
/// zeros of `shape` at the selected slices, in index order, so repeated indices sum their
/// contributions deterministically.
public func indexAdd(_ x: Tensor, _ indices: IndexTensor, alongAxis axis: Int, into shape: [Int]) -> Tensor {
  x.indexAdded(indices, alongAxis: axis, into: shape)
}

/// PyTorch's `gather`: `indices` has `x`'s rank, and each result element is the element
/// of this tensor at the same position except along `axis`, where the index says which.
public func gather(_ x: Tensor, _ indices: IndexTensor, alongAxis axis: Int) -> Tensor {
  x.gathered(indices, alongAxis: axis)
}

/// The gradient of ``gather(_:_:alongAxis:)``: `x` (of the indices' shape) added into zeros of
/// `shape` at the gathered positions, in row-major order of the indices.
public func scatterAdd(_ x: Tensor, _ indices: IndexTensor, alongAxis axis: Int, into shape: [Int]) -> Tensor {
  x.scatterAdded(indices, alongAxis: axis, into: shape)
}
