/// Printing tensors.
extension Tensor: CustomStringConvertible {
  /// The shape, dtype and (for up to 64 elements) the values in row-major order.
  public var description: String {
    let head = "Tensor(\(shape), \(dtype))"
    guard count <= 64 else { return head }
    return head + " " + scalars(as: Double.self).map { "\($0)" }.joined(separator: ", ")
  }
}
