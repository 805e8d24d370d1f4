/// Scans and the reductions built on the maximum.
extension Tensor {
  fileprivate func cumulativeSum(alongAxis axis: Int, reverse: Bool = false) -> Tensor {
    let a = Shape.axis(axis, rank: rank, "cumulativeSum")
    let order = (0..<rank).filter { $0 != a } + [a]
    var inverse = [Int](repeating: 0, count: rank)
    for (i, d) in order.enumerated() { inverse[d] = i }
    let rows = permute(self, order).copied()
    let length = shape[a], count = rows.count
    func kernel<T: TensorScalar>(_: T.Type) {
      let p = rows.base(T.self)
      guard length > 0 else { return }
      Parallel.forRanges(count / length, costPerItem: length) { range in
        for row in range {
          let x = p + row * length
          if reverse {
            for i in stride(from: length - 2, through: 0, by: -1) { x[i] += x[i + 1] }
          } else {
            for i in 1..<Swift.max(length, 1) { x[i] += x[i - 1] }
          }
        }
      }
    }
    dtype.dispatch(kernel, kernel)
    return permute(rows, inverse)
  }

  fileprivate func minWithIndices(alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> (values: Tensor, indices: [Int]) {
    let (values, indices) = maxWithIndices(-self, alongAxes: axes, keepingDimensions: keepingDimensions)
    return (-values, indices)
  }

  fileprivate func min(alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> Tensor {
    minWithIndices(alongAxes: axes, keepingDimensions: keepingDimensions).values
  }

  fileprivate func argmin(alongAxis axis: Int) -> [Int] { minWithIndices(alongAxes: [axis]).indices }
}

/// The running sum along `axis`: element i is the sum of elements 0...i (of i...n-1 when
/// `reverse`), added one after another in that order.
public func cumulativeSum(_ x: Tensor, alongAxis axis: Int, reverse: Bool = false) -> Tensor {
  x.cumulativeSum(alongAxis: axis, reverse: reverse)
}

/// The minimum over `axes` and the position of its first occurrence within the reduced elements,
/// as ``maxWithIndices(_:alongAxes:keepingDimensions:)`` gives them for the maximum.
public func minWithIndices(_ x: Tensor, alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> (values: Tensor, indices: [Int]) {
  x.minWithIndices(alongAxes: axes, keepingDimensions: keepingDimensions)
}

/// The minimum over `axes` (all axes when `nil`).
public func min(_ x: Tensor, alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> Tensor {
  x.min(alongAxes: axes, keepingDimensions: keepingDimensions)
}

/// The index of the smallest element along `axis` for every position of the other axes, in
/// row-major order of those axes.
public func argmin(_ x: Tensor, alongAxis axis: Int) -> [Int] {
  x.argmin(alongAxis: axis)
}
