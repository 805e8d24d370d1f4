/// Running a kernel written once, generic over ``TensorScalar``, for a dtype known only at run time.

extension DType {
  /// Calls the specialisation of a generic kernel that matches this dtype and returns its result.
  ///
  /// Swift has no generic closures, so the kernel is passed twice: write it once as a generic local
  /// function `func kernel<T: TensorScalar>(_: T.Type) -> R` and call `x.dtype.dispatch(kernel, kernel)`.
  /// Each argument is a reference to that one function at a concrete type, which the compiler
  /// specialises; the loops never run as unspecialised generic code, as they would if the kernel
  /// were called through an existential metatype.
  ///
  /// - Parameters:
  ///   - float: the kernel at `Float`, run for ``float32``.
  ///   - double: the kernel at `Double`, run for ``float64``.
  /// - Returns: what the kernel returns.
  @inlinable
  public func dispatch<Result>(
    _ float: (Float.Type) throws -> Result, _ double: (Double.Type) throws -> Result
  ) rethrows -> Result {
    switch self {
    case .float32: try float(Float.self)
    case .float64: try double(Double.self)
    }
  }
}
