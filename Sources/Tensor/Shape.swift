/// Shape arithmetic shared by the kernels: strides, density, broadcasting.
public enum Shape {
  /// The row-major strides of `shape`.
  public static func contiguousStrides(_ shape: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: shape.count)
    var step = 1
    for axis in shape.indices.reversed() {
      strides[axis] = step
      step *= max(shape[axis], 1)
    }
    return strides
  }

  /// True when `strides` is the row-major layout of `shape` (dimensions of size 1 are ignored).
  public static func isContiguous(_ shape: [Int], _ strides: [Int]) -> Bool {
    var step = 1
    for axis in shape.indices.reversed() where shape[axis] != 1 {
      if strides[axis] != step { return false }
      step *= shape[axis]
    }
    return true
  }

  /// The strides under which `newShape` addresses the elements of `shape` (laid out with
  /// `strides`) in the same row-major order, or `nil` when no strides can: a reshape is a view
  /// exactly when every group of new dimensions falls inside a run of old dimensions that are
  /// contiguous with each other. A slice of the last axis, split into heads, stays a view.
  public static func viewStrides(_ shape: [Int], _ strides: [Int], as newShape: [Int]) -> [Int]? {
    if shape.contains(0) || newShape.contains(0) { return contiguousStrides(newShape) }
    let old = shape.indices.filter { shape[$0] != 1 }
    var result = [Int](repeating: 0, count: newShape.count)
    var n = newShape.count - 1, o = old.count - 1, step = 1
    while o >= 0 {
      // A run of old dimensions, innermost first, each stepping over the one inside it.
      var run = shape[old[o]]
      step = strides[old[o]]
      var first = o
      while first > 0 && strides[old[first - 1]] == strides[old[first]] * shape[old[first]] {
        first -= 1
        run *= shape[old[first]]
      }
      var covered = 1
      while covered < run {
        guard n >= 0 else { return nil }
        result[n] = step
        step *= newShape[n]
        covered *= newShape[n]
        n -= 1
      }
      guard covered == run else { return nil }
      o = first - 1
    }
    while n >= 0 {
      guard newShape[n] == 1 else { return nil }
      result[n] = step
      n -= 1
    }
    return result
  }

  /// The dimensions ordered from the largest stride to the smallest (ties keep their order).
  public static func memoryOrder(_ shape: [Int], _ strides: [Int]) -> [Int] {
    shape.indices.sorted { a, b in
      let sa = shape[a] == 1 ? Int.max : strides[a]
      let sb = shape[b] == 1 ? Int.max : strides[b]
      return sa != sb ? sa > sb : a < b
    }
  }

  /// True when the elements fill one gap-free block in some order of the dimensions.
  public static func isDense(_ shape: [Int], _ strides: [Int]) -> Bool {
    let order = memoryOrder(shape, strides)
    return isContiguous(order.map { shape[$0] }, order.map { strides[$0] })
  }

  /// The dense strides that lay `shape` out in the same dimension order as `strides` does.
  public static func denseStrides(_ shape: [Int], like strides: [Int]) -> [Int] {
    let order = memoryOrder(shape, strides)
    let permuted = contiguousStrides(order.map { shape[$0] })
    var result = [Int](repeating: 0, count: shape.count)
    for (i, axis) in order.enumerated() { result[axis] = permuted[i] }
    return result
  }

  /// True when two stride lists address the elements of `shape` identically (dimensions of size
  /// 1 are never stepped along, so their strides do not matter).
  public static func sameLayout(_ shape: [Int], _ a: [Int], _ b: [Int]) -> Bool {
    shape.indices.allSatisfy { shape[$0] == 1 || a[$0] == b[$0] }
  }

  /// The shape two shapes broadcast to (NumPy rules), or `nil` when they are incompatible.
  public static func broadcast(_ a: [Int], _ b: [Int]) -> [Int]? {
    let rank = max(a.count, b.count)
    var result = [Int](repeating: 1, count: rank)
    for i in 0..<rank {
      let x = i < rank - a.count ? 1 : a[i - (rank - a.count)]
      let y = i < rank - b.count ? 1 : b[i - (rank - b.count)]
      guard x == y || x == 1 || y == 1 else { return nil }
      result[i] = x == 1 ? y : x
    }
    return result
  }

  /// The strides that read a tensor of `shape` and `strides` as if it had shape `target`
  /// (broadcast dimensions get stride 0).
  static func broadcastStrides(_ shape: [Int], _ strides: [Int], to target: [Int]) -> [Int] {
    let lead = target.count - shape.count
    return target.indices.map { i in
      i < lead || shape[i - lead] == 1 ? 0 : strides[i - lead]
    }
  }

  /// Normalises a possibly negative axis and checks it against `rank`, naming `operation` if not.
  public static func axis(_ axis: Int, rank: Int, _ operation: String) -> Int {
    let a = axis < 0 ? axis + rank : axis
    require(a >= 0 && a < rank, "\(operation): axis \(axis) is out of range for rank \(rank)")
    return a
  }
}
