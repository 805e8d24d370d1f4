/// A reference-counted buffer of tensor elements, obtained from ``Allocator``.
///
/// Tensors are values that share a storage until one of them is mutated (copy on write); views
/// such as slices and permutations share it with different offsets and strides.
final class TensorStorage {
  let pointer: UnsafeMutableRawPointer
  let count: Int
  let dtype: DType
  private let sizeClass: Int

  /// A buffer of `count` uninitialised elements of type `dtype`.
  init(count: Int, dtype: DType) {
    self.count = count
    self.dtype = dtype
    (pointer, sizeClass) = Allocator.allocate(max(count, 1) * dtype.byteCount)
  }

  deinit { Allocator.release(pointer, sizeClass: sizeClass) }

  func typed<T: TensorScalar>(_: T.Type) -> UnsafeMutablePointer<T> {
    pointer.assumingMemoryBound(to: T.self)
  }
}
