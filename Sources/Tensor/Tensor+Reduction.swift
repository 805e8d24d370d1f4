/// Reductions over any set of axes.
extension Tensor {
  /// The layout a reduction works on: kept axes first, reduced axes last, as a contiguous
  /// [outer, inner] block (no copy when the memory order already has the reduced axes innermost,
  /// as channel-major feature maps do for per-channel statistics).
  func reductionRows(_ axes: [Int], _ operation: String) -> (rows: Tensor, outer: Int, inner: Int, kept: [Int]) {
    let reduced = Set(axes.map { Shape.axis($0, rank: rank, operation) })
    let kept = Shape.memoryOrder(shape, strides).filter { !reduced.contains($0) }
    let rows = permute(self, kept + reduced.sorted()).contiguous()
    let outer = kept.reduce(1) { $0 * shape[$1] }
    return (rows, outer, outer == 0 ? 0 : count / outer, kept)
  }

  /// The result of reducing to `kept` (in memory order): its shape in axis order, with strides
  /// that store it in the order of `kept`, so the reduction writes it row after row.
  private func reducedTensor(_ kept: [Int], keepingDimensions: Bool) -> Tensor {
    let axes = keepingDimensions ? Array(shape.indices) : kept.sorted()
    let outShape = axes.map { kept.contains($0) ? shape[$0] : 1 }
    var orderStrides = [Int](repeating: 0, count: outShape.count)
    var step = 1
    for axis in kept.reversed() {
      let i = axes.firstIndex(of: axis)!
      orderStrides[i] = step
      step *= shape[axis]
    }
    for i in axes.indices where !kept.contains(axes[i]) { orderStrides[i] = step }
    return Tensor(uninitializedShape: outShape, dtype: dtype, strides: orderStrides)
  }

  fileprivate func sum(alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> Tensor {
    if let columns = columnSum(axes ?? Array(0..<rank), keepingDimensions: keepingDimensions) { return columns }
    let (rows, outer, inner, kept) = reductionRows(axes ?? Array(0..<rank), "sum")
    let out = reducedTensor(kept, keepingDimensions: keepingDimensions)
    func kernel<T: TensorScalar>(_: T.Type) {
      let x = rows.base(T.self), y = out.base(T.self)
      Parallel.forRanges(outer, costPerItem: inner) { r in for o in r { y[o] = rowSum(x + o * inner, inner) } }
    }
    dtype.dispatch(kernel, kernel)
    return out
  }

  /// The sum over `axes` when, in memory, they lie between kept axes that are not all outside them
  /// ([outer kept, reduced, inner kept], inner not empty): a bias gradient summed over the rows of
  /// [rows, features], or a middle axis. Whole rows of `inner` elements are added into column
  /// accumulators, where the general path would first copy the reduced axes innermost. `nil` for
  /// other layouts.
  ///
  /// Each column adds its terms in blocks of `summationBlock` rows in the working precision, and
  /// the block sums in Float64, as ``rowSum(_:_:)`` does; the order depends on the shape alone.
  private func columnSum(_ axes: [Int], keepingDimensions: Bool) -> Tensor? {
    guard isDense, count > 0 else { return nil }
    let reduced = Set(axes.map { Shape.axis($0, rank: rank, "sum") })
    let order = Shape.memoryOrder(shape, strides).filter { shape[$0] != 1 }
    guard let first = order.firstIndex(where: reduced.contains), let last = order.lastIndex(where: reduced.contains),
      last < order.count - 1, order[first...last].allSatisfy(reduced.contains)
    else { return nil }
    let outer = order[..<first].reduce(1) { $0 * shape[$1] }
    let terms = order[first...last].reduce(1) { $0 * shape[$1] }
    let inner = order[(last + 1)...].reduce(1) { $0 * shape[$1] }
    let kept = Shape.memoryOrder(shape, strides).filter { !reduced.contains($0) }
    let out = reducedTensor(kept, keepingDimensions: keepingDimensions)
    // Columns per task: up to 256 (accumulators that stay in the L1 cache), fewer so that every
    // thread has a share of a narrow row.
    let width = Swift.min(256, Swift.max(16, (inner + Parallel.threadCount - 1) / Parallel.threadCount + 7) / 8 * 8)
    let tasks = (inner + width - 1) / width
    func kernel<T: TensorScalar>(_: T.Type) {
      let x = base(T.self), y = out.base(T.self)
      Parallel.forRanges(outer * tasks, costPerItem: terms * Swift.min(width, inner)) { range in
        var block = [T](repeating: 0, count: width), total = [Double](repeating: 0, count: width)
        for task in range {
          let (o, t) = task.quotientAndRemainder(dividingBy: tasks)
          let start = t * width, columns = Swift.min(width, inner - start)
          let source = x + o * terms * inner + start
          for j in 0..<columns { total[j] = 0 }
          var row = 0
          while row < terms {
            let end = Swift.min(row + summationBlock, terms)
            for j in 0..<columns { block[j] = 0 }
            block.withUnsafeMutableBufferPointer { b in
              for r in row..<end {
                let p = source + r * inner
                for j in 0..<columns { b[j] += p[j] }
              }
            }
            for j in 0..<columns { total[j] += Double(block[j]) }
            row = end
          }
          for j in 0..<columns { y[o * inner + start + j] = T(total[j]) }
        }
      }
    }
    dtype.dispatch(kernel, kernel)
    return out
  }

  fileprivate func mean(alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> Tensor {
    let s = sum(alongAxes: axes, keepingDimensions: keepingDimensions)
    return s * (1 / Double(Swift.max(1, count / Swift.max(1, s.count))))
  }

  fileprivate func variance(alongAxes axes: [Int]? = nil, unbiased: Bool = false, keepingDimensions: Bool = false) -> Tensor {
    let m = mean(alongAxes: axes, keepingDimensions: true)
    let d = self - m
    let squares = TensorModule.sum(d * d, alongAxes: axes, keepingDimensions: keepingDimensions)
    let n = count / Swift.max(1, m.count)
    return squares * (1 / Double(Swift.max(1, unbiased ? n - 1 : n)))
  }

  fileprivate func maxWithIndices(alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> (values: Tensor, indices: [Int]) {
    let (rows, outer, inner, kept) = reductionRows(axes ?? Array(0..<rank), "max")
    require(inner > 0, "max: cannot reduce an empty axis of shape \(shape)")
    let out = reducedTensor(kept, keepingDimensions: keepingDimensions)
    var indices = [Int](repeating: 0, count: outer)
    func kernel<T: TensorScalar>(_: T.Type) {
      let x = rows.base(T.self), y = out.base(T.self)
      for o in 0..<outer {
        let row = x + o * inner
        var best = row[0], at = 0
        for i in 1..<Swift.max(inner, 1) where row[i] > best || (row[i].isNaN && !best.isNaN) {
          best = row[i]
          at = i
        }
        y[o] = best
        indices[o] = at
      }
    }
    dtype.dispatch(kernel, kernel)
    let axisOrder = kept.sorted()
    if axisOrder != kept {  // put the indices in row-major order of the kept axes
      let rowMajor = Shape.contiguousStrides(axisOrder.map { shape[$0] })
      var reordered = indices
      for o in 0..<outer {
        var rest = o, position = 0
        for axis in kept.reversed() {
          position += rest % shape[axis] * rowMajor[axisOrder.firstIndex(of: axis)!]
          rest /= shape[axis]
        }
        reordered[position] = indices[o]
      }
      indices = reordered
    }
    return (out, indices)
  }

  fileprivate func max(alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> Tensor {
    maxWithIndices(alongAxes: axes, keepingDimensions: keepingDimensions).values
  }

  fileprivate func argmax(alongAxis axis: Int) -> [Int] { maxWithIndices(alongAxes: [axis]).indices }
}

/// The sum over `axes` (all axes when `nil`).
public func sum(_ x: Tensor, alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> Tensor {
  x.sum(alongAxes: axes, keepingDimensions: keepingDimensions)
}

/// The mean over `axes` (all axes when `nil`).
public func mean(_ x: Tensor, alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> Tensor {
  x.mean(alongAxes: axes, keepingDimensions: keepingDimensions)
}

/// The variance over `axes` (all axes when `nil`): the mean squared deviation, divided by
/// n - 1 instead of n when `unbiased`.
public func variance(_ x: Tensor, alongAxes axes: [Int]? = nil, unbiased: Bool = false, keepingDimensions: Bool = false) -> Tensor {
  x.variance(alongAxes: axes, unbiased: unbiased, keepingDimensions: keepingDimensions)
}

/// The maximum over `axes` and, for each, the position of its first occurrence within the
/// reduced elements (row-major over the reduced axes); the indices are listed in row-major
/// order of the kept axes.
public func maxWithIndices(_ x: Tensor, alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> (values: Tensor, indices: [Int]) {
  x.maxWithIndices(alongAxes: axes, keepingDimensions: keepingDimensions)
}

/// The maximum over `axes` (all axes when `nil`).
public func max(_ x: Tensor, alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> Tensor {
  x.max(alongAxes: axes, keepingDimensions: keepingDimensions)
}

/// The index of the largest element along `axis` for every position of the other axes, in
/// row-major order of those axes.
public func argmax(_ x: Tensor, alongAxis axis: Int) -> [Int] {
  x.argmax(alongAxis: axis)
}
