/// An iteration over the elements of several strided operands that share one shape, row by row.
///
/// Dimensions of size 1 are dropped and neighbouring dimensions that are contiguous for every
/// operand are merged, so a dense operand becomes one long row and the body is called per row,
/// never per element.
struct StridedLoop {
  private(set) var shape: [Int]
  private(set) var strides: [[Int]]

  init(shape: [Int], strides operandStrides: [[Int]]) {
    var dims: [(size: Int, strides: [Int])] = []
    for axis in shape.indices where shape[axis] != 1 {
      let s = operandStrides.map { $0[axis] }
      if let last = dims.last,
        zip(last.strides, s).allSatisfy({ $0 == $1 * shape[axis] })
      {
        dims[dims.count - 1] = (last.size * shape[axis], s)
      } else {
        dims.append((shape[axis], s))
      }
    }
    if dims.isEmpty { dims = [(shape.contains(0) ? 0 : 1, operandStrides.map { _ in 0 })] }
    self.shape = dims.map(\.size)
    self.strides = operandStrides.indices.map { k in dims.map { $0.strides[k] } }
  }

  /// The number of elements in one row.
  var rowLength: Int { shape[shape.count - 1] }

  /// The stride of operand `k` along a row.
  func rowStride(_ k: Int) -> Int { strides[k][shape.count - 1] }

  /// The number of rows.
  var rowCount: Int { shape.dropLast().reduce(1, *) }

  /// Calls `body` with each row's starting offset for every operand.
  func forEachRow(_ body: (UnsafeMutableBufferPointer<Int>) -> Void) { forEachRow(in: 0..<rowCount, body) }

  /// Calls `body` with the starting offsets of the rows numbered `rows` (in row-major order).
  func forEachRow(in rows: Range<Int>, _ body: (UnsafeMutableBufferPointer<Int>) -> Void) {
    if shape.contains(0) || rows.isEmpty { return }
    let outer = shape.count - 1
    var index = [Int](repeating: 0, count: outer)
    var offsets = [Int](repeating: 0, count: strides.count)
    var remaining = rows.lowerBound
    for axis in stride(from: outer - 1, through: 0, by: -1) {
      index[axis] = remaining % shape[axis]
      remaining /= shape[axis]
      for k in offsets.indices { offsets[k] += index[axis] * strides[k][axis] }
    }
    var left = rows.count
    offsets.withUnsafeMutableBufferPointer { offsets in
      while true {
        left -= 1
        if left < 0 { return }
        body(offsets)
        var axis = outer - 1
        while axis >= 0 {
          index[axis] += 1
          for k in offsets.indices { offsets[k] += strides[k][axis] }
          if index[axis] < shape[axis] { break }
          for k in offsets.indices { offsets[k] -= strides[k][axis] * shape[axis] }
          index[axis] = 0
          axis -= 1
        }
        if axis < 0 { return }
      }
    }
  }
}
