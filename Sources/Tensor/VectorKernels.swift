import CKernels

/// Whether this processor runs the AVX2 and FMA kernels of CKernels (checked once).
let vectorKernelsAvailable = reprise_kernels_available()

/// Whether scalars of type `T` take the C kernels here: Float32 on a processor that has them.
@inline(__always)
func usesVectorKernels<T: TensorScalar>(_: T.Type) -> Bool { T.self == Float.self && vectorKernelsAvailable }

/// A pointer to scalars known to be `Float`, for the C kernels.
@inline(__always)
func floats<T>(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<Float> {
  UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self)
}

@inline(__always)
func floats<T>(_ p: UnsafePointer<T>) -> UnsafePointer<Float> {
  UnsafeRawPointer(p).assumingMemoryBound(to: Float.self)
}
