import COpenBLAS
import RealModule

/// The element type of a tensor, chosen at run time.
///
/// Training uses `.float32`; numerical gradient checks use `.float64`.
public enum DType: String, Sendable, CustomStringConvertible, CaseIterable {
  /// 32-bit IEEE floating point (`Float`).
  case float32
  /// 64-bit IEEE floating point (`Double`).
  case float64

  /// The size of one element in bytes.
  public var byteCount: Int { self == .float32 ? 4 : 8 }

  /// The name as written in messages, for example `float32`.
  public var description: String { rawValue }
}

/// A scalar type that tensors can hold: `Float` or `Double`.
///
/// Kernels are written once, generic over `TensorScalar`, and specialised for both types inside this
/// module, so the generic code never runs unspecialised across a module boundary.
public protocol TensorScalar: Real, BinaryFloatingPoint, SIMDScalar, Sendable, Codable {
  /// The run-time element type that corresponds to this scalar type.
  static var dtype: DType { get }

  /// `C = alpha * op(A) * op(B) + beta * C` for row-major matrices: one call to OpenBLAS on the
  /// calling thread.
  static func blasGemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Self,
    a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int, beta: Self,
    c: UnsafeMutablePointer<Self>, ldc: Int)
}

extension Float: TensorScalar {
  /// `.float32`.
  public static var dtype: DType { .float32 }

  /// Single-precision GEMM through `cblas_sgemm`.
  public static func blasGemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float,
    c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    cblas_sgemm(
      CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
      blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c,
      blasint(ldc))
  }
}

extension Double: TensorScalar {
  /// `.float64`.
  public static var dtype: DType { .float64 }

  /// Double-precision GEMM through `cblas_dgemm`.
  public static func blasGemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Double,
    a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int, beta: Double,
    c: UnsafeMutablePointer<Double>, ldc: Int
  ) {
    cblas_dgemm(
      CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
      blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c,
      blasint(ldc))
  }
}

extension TensorScalar {
  /// `C = alpha * op(A) * op(B) + beta * C` for row-major matrices, split across
  /// ``Parallel/threadCount`` threads by blocks of columns of C (or of rows, when C is taller than
  /// wide), each block one single-threaded OpenBLAS call; a product whose inner dimension K dwarfs C
  /// is split along K instead. Results are deterministic for a given thread count.
  static func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Self,
    a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int, beta: Self,
    c: UnsafeMutablePointer<Self>, ldc: Int
  ) {
    let threads = Parallel.threadCount
    if threads > 1 && k >= 8 * max(m, n) && m * n * k >= 1 << 22 {
      return splitAlongK(pieces: threads, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, transposeA: transposeA, b: b, ldb: ldb, transposeB: transposeB, beta: beta, c: c, ldc: ldc)
    }
    let byColumns = n > m
    let extent = byColumns ? n : m
    // Split by columns, the shared operand A is the small one (a weight): pieces beyond one per
    // thread cost little and let a thread that started late (a worker waking up) take fewer.
    let perThread = byColumns && n >= 4 * m ? 4 : 1
    let pieces = min(threads * perThread, extent / (16 * perThread), max(1, m * n * k / (1 << 18)))
    guard pieces > 1 else {
      return blasGemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }
    Parallel.run(pieces) { p in
      // Blocks start on multiples of 16 so that each call sees aligned, kernel-sized panels.
      let start = extent * p / pieces / 16 * 16, end = p == pieces - 1 ? extent : extent * (p + 1) / pieces / 16 * 16
      if byColumns {
        blasGemm(
          transposeA: transposeA, transposeB: transposeB, m: m, n: end - start, k: k, alpha: alpha, a: a, lda: lda,
          b: b + (transposeB ? start * ldb : start), ldb: ldb, beta: beta, c: c + start, ldc: ldc)
      } else {
        blasGemm(
          transposeA: transposeA, transposeB: transposeB, m: end - start, n: n, k: k, alpha: alpha,
          a: a + (transposeA ? start : start * lda), lda: lda, b: b, ldb: ldb, beta: beta, c: c + start * ldc, ldc: ldc)
      }
    }
  }

  /// A product with a long inner dimension and a small result (a weight gradient sums over every
  /// pixel of the batch), split along K: each thread packs only its share of both operands, where a
  /// split of C's rows or columns would have every thread pack the whole of the other operand. The
  /// partial products are added to C in piece order, so results depend on the thread count only.
  private static func splitAlongK(
    pieces: Int, m: Int, n: Int, k: Int, alpha: Self, a: UnsafePointer<Self>, lda: Int, transposeA: Bool,
    b: UnsafePointer<Self>, ldb: Int, transposeB: Bool, beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int
  ) {
    let scratch = Tensor(uninitializedShape: [(pieces - 1) * m * n], dtype: dtype)
    let partial = scratch.base(Self.self)
    Parallel.run(pieces) { p in
      let start = k * p / pieces / 16 * 16, end = p == pieces - 1 ? k : k * (p + 1) / pieces / 16 * 16
      blasGemm(
        transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: end - start, alpha: alpha,
        a: a + (transposeA ? start * lda : start), lda: lda, b: b + (transposeB ? start : start * ldb), ldb: ldb,
        beta: p == 0 ? beta : 0, c: p == 0 ? c : partial + (p - 1) * m * n, ldc: p == 0 ? ldc : n)
    }
    for p in 1..<pieces {
      let part = partial + (p - 1) * m * n
      for i in 0..<m { for j in 0..<n { c[i * ldc + j] += part[i * n + j] } }
    }
    withExtendedLifetime(scratch) {}
  }
}
