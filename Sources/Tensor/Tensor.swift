/// An n-dimensional array of `Float` or `Double` elements.
///
/// Images use the [N, C, H, W] convention (batch, channels, height, width) at the API. A tensor is a
/// value: copies share storage until one is mutated. It is a strided view of its storage, so
/// permutations, slices and broadcasts cost no copy, and convolutions keep feature maps channel-major
/// in memory ([C, N, H, W], see docs/design.md) while their shape stays [N, C, H, W].
public struct Tensor {
  /// The size of each dimension.
  public internal(set) var shape: [Int]
  /// The distance in elements between neighbours along each dimension.
  public internal(set) var strides: [Int]
  /// The position of the first element in the storage.
  private(set) var offset: Int
  var storage: TensorStorage

  /// The element type.
  public var dtype: DType { storage.dtype }
  /// The number of dimensions.
  public var rank: Int { shape.count }
  /// The number of elements.
  public var count: Int { shape.reduce(1, *) }

  init(storage: TensorStorage, shape: [Int], strides: [Int], offset: Int = 0) {
    self.storage = storage
    self.shape = shape
    self.strides = strides
    self.offset = offset
  }

  /// Whether this tensor is all of its storage and nothing else holds that storage, so that
  /// writing into it changes no other tensor.
  package mutating func ownsItsStorage() -> Bool {
    storage.count == count && isKnownUniquelyReferenced(&storage)
  }

  /// A tensor of the given shape whose elements are not initialised; kernels fill it.
  ///
  /// - Parameter strides: the memory layout; row-major when `nil`. It must be dense (a permutation
  ///   of a row-major layout).
  package init(uninitializedShape shape: [Int], dtype: DType, strides: [Int]? = nil) {
    require(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in shape \(shape)")
    let count = shape.reduce(1, *)
    self.init(
      storage: TensorStorage(count: count, dtype: dtype), shape: shape,
      strides: strides ?? Shape.contiguousStrides(shape))
  }

  /// True when the elements are stored row-major with no gaps, starting at the storage's offset.
  public var isContiguous: Bool { Shape.isContiguous(shape, strides) }

  /// True when the elements fill a block of memory without gaps in some order of the dimensions
  /// (row-major, channel-major or any other permutation).
  public var isDense: Bool { Shape.isDense(shape, strides) }

  /// The scalar of a tensor with one element, as a `Double`.
  ///
  /// - Precondition: the tensor has exactly one element.
  public var scalar: Double {
    require(count == 1, "scalar: tensor of shape \(shape) has \(count) elements, expected 1")
    return element(at: offset)
  }

  /// The elements in row-major order, converted to `T`.
  public func scalars<T: TensorScalar>(as type: T.Type = Float.self) -> [T] {
    let c = contiguous()
    func read<S: TensorScalar>(_: S.Type) -> [T] {
      let p = c.storage.typed(S.self) + c.offset
      return (0..<c.count).map { T(p[$0]) }
    }
    return c.dtype.dispatch(read, read)
  }

  /// True when no element is infinite or NaN.
  public var isFinite: Bool {
    let c = contiguous()
    func check<T: TensorScalar>(_: T.Type) -> Bool {
      UnsafeBufferPointer(start: c.storage.typed(T.self) + c.offset, count: c.count).allSatisfy(\.isFinite)
    }
    return c.dtype.dispatch(check, check)
  }

  /// The element at a multi-dimensional index, as a `Double`.
  ///
  /// - Precondition: `index` has one entry per dimension, each within bounds.
  public subscript(_ index: Int...) -> Double {
    require(
      index.count == rank && zip(index, shape).allSatisfy { $0 >= 0 && $0 < $1 },
      "subscript: index \(index) is out of bounds for shape \(shape)")
    let position = offset + zip(index, strides).reduce(0) { $0 + $1.0 * $1.1 }
    return element(at: position)
  }

  /// The element at a storage position, as a `Double`.
  private func element(at position: Int) -> Double {
    func read<T: TensorScalar>(_: T.Type) -> Double { Double(storage.typed(T.self)[position]) }
    return dtype.dispatch(read, read)
  }

  /// A pointer to the first element, typed as `T`, for kernels that read.
  func base<T: TensorScalar>(_: T.Type) -> UnsafeMutablePointer<T> {
    require(T.dtype == dtype, "internal: reading a \(dtype) tensor as \(T.dtype)")
    return storage.typed(T.self) + offset
  }

  /// Makes the storage unique (copying if it is shared) and passes a mutable pointer to the first
  /// element; the layout (`shape`, `strides`) stays as it is when the storage was already unique,
  /// and becomes row-major when a copy was needed.
  mutating func withUniqueBase<T: TensorScalar, R>(
    _: T.Type, _ body: (UnsafeMutablePointer<T>) throws -> R
  ) rethrows -> R {
    if !isKnownUniquelyReferenced(&storage) || !isDense { self = copied() }
    return try body(base(T.self))
  }
}
