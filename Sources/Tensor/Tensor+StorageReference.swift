/// A weak reference to a tensor's storage: whether it is still alive somewhere, and its size. The
/// saved-tensor report uses it to tell which results of a forward pass the tape still holds,
/// without holding them itself.
public struct TensorStorageReference {
  private weak var storage: TensorStorage?
  /// The identity of the storage (shared by views of it).
  public let id: ObjectIdentifier
  /// The storage's size in bytes (all of it, also for a view of a part).
  public let byteCount: Int

  init(_ storage: TensorStorage) {
    self.storage = storage
    id = ObjectIdentifier(storage)
    byteCount = storage.count * storage.dtype.byteCount
  }

  /// Whether anything still holds the storage.
  public var isAlive: Bool { storage != nil }
}

extension Tensor {
  /// A weak reference to this tensor's storage.
  public var storageReference: TensorStorageReference { TensorStorageReference(storage) }
}
