/// Scans and the reductions built on the maximum.
extension Tensor {
  /// The running sum along `axis`: element i is the sum of elements 0...i (of i...n-1 when
  /// `reverse`), added one after another in that order.
  public func cumulativeSum(alongAxis axis: Int, reverse: Bool = false) -> Tensor {
    let a = Shape.axis(axis, rank: rank, "cumulativeSum")
    let order = (0..<rank).filter { $0 != a } + [a]
    var inverse = [Int](repeating: 0, count: rank)
    for (i, d) in order.enumerated() { inverse[d] = i }
    let rows = permuted(order).copied()
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
    switch dtype {
    case .float32: kernel(Float.self)
    case .float64: kernel(Double.self)
    }
    return rows.permuted(inverse)
  }

  /// The minimum over `axes` and the position of its first occurrence within the reduced elements,
  /// as ``maxWithIndices(alongAxes:keepingDimensions:)`` gives them for the maximum.
  public func minWithIndices(alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> (values: Tensor, indices: [Int]) {
    let (values, indices) = (-self).maxWithIndices(alongAxes: axes, keepingDimensions: keepingDimensions)
    return (-values, indices)
  }

  /// The minimum over `axes` (all axes when `nil`).
  public func min(alongAxes axes: [Int]? = nil, keepingDimensions: Bool = false) -> Tensor {
    minWithIndices(alongAxes: axes, keepingDimensions: keepingDimensions).values
  }

  /// The index of the smallest element along `axis` for every position of the other axes, in
  /// row-major order of those axes.
  public func argmin(alongAxis axis: Int) -> [Int] { minWithIndices(alongAxes: [axis]).indices }
}
