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

/// Runs `body` with the AVX-512 tiles of the convolution kernels (and the Winograd products' wider
/// register blocks) on or off (off: the AVX2 tiles run even where the processor has AVX-512), then
/// restores the setting. For tests that check both tiles on one machine; a processor without
/// AVX-512 runs the AVX2 tiles either way.
func withWideConvolutionTiles(_ enabled: Bool, _ body: () throws -> Void) rethrows {
  let previous = reprise_set_wide_kernels_enabled(enabled)
  defer { _ = reprise_set_wide_kernels_enabled(previous) }
  try body()
}
