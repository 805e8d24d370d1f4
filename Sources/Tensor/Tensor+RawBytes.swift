/// Access to a tensor's elements as raw memory, for code that hands them to another library (a
/// communication library, a file format), as `Array`'s `withUnsafeBytes` does.
extension Tensor {
  /// Calls `body` with the elements in row-major order as raw bytes (`count * dtype.byteCount` of
  /// them), copying first when the tensor is not contiguous. The pointer is valid only inside `body`.
  public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    let c = contiguous()
    func run<T: TensorScalar>(_: T.Type) throws -> R {
      try body(UnsafeRawBufferPointer(UnsafeBufferPointer(start: c.base(T.self), count: c.count)))
    }
    return try c.dtype.dispatch(run, run)
  }

  /// Calls `body` with the elements in row-major order as mutable raw bytes. The tensor first gets
  /// a row-major storage of its own (a copy when the storage is shared or laid out otherwise), so
  /// what `body` writes changes this tensor only. The pointer is valid only inside `body`.
  public mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
    if !isContiguous || !ownsItsStorage() { self = copied() }
    func run<T: TensorScalar>(_: T.Type) throws -> R {
      try body(UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(start: base(T.self), count: count)))
    }
    return try dtype.dispatch(run, run)
  }
}
