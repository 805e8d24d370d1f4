import ArgumentParser
import COpenBLAS
import Foundation
import Reprise

/// `reprise bench`: timings of the kernels on this machine.
struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Time a kernel: the Tensor API against the direct BLAS call it wraps.")

  enum Kernel: String, ExpressibleByArgument, CaseIterable {
    case matmul
  }

  @Option(help: "The kernel to time: \(Kernel.allCases.map(\.rawValue).joined(separator: ", ")).")
  var kernel: Kernel = .matmul

  @Option(help: "Matrix size M = N = K for matmul.")
  var size = 1024

  @Option(help: "Timed repetitions (after one warm-up); the median is reported.")
  var repeats = 11

  @Option(help: "Threads for OpenBLAS and Reprise's loops.")
  var threads: Int?

  @Flag(help: "Print one JSON object instead of text.")
  var json = false

  func validate() throws {
    guard size >= 1 else { throw ValidationError("--size must be at least 1, got \(size)") }
    guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
    if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
  }

  func run() throws {
    if let threads { Parallel.setThreadCount(threads) }
    let n = size
    var random = RandomGenerator(seed: 1)
    let a = Tensor(randomNormal: [n, n], using: &random), b = Tensor(randomNormal: [n, n], using: &random)
    let lhs = a.scalars(as: Float.self), rhs = b.scalars(as: Float.self)
    var out = [Float](repeating: 0, count: n * n)
    let direct = {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(n), blasint(n), blasint(n), 1, lhs, blasint(n), rhs, blasint(n), 0, &out, blasint(n))
    }
    let api = { _ = matmul(a, b) }
    direct()
    api()
    // Interleave the two so that both see the same machine state.
    var directTimes: [Double] = [], apiTimes: [Double] = []
    for _ in 0..<repeats {
      directTimes.append(seconds(direct))
      apiTimes.append(seconds(api))
    }
    let d = median(directTimes), t = median(apiTimes), flops = 2 * pow(Double(n), 3)
    if json {
      print(
        #"{"kernel": "matmul", "size": \#(n), "threads": \#(Parallel.threadCount), "directSecondsMedian": \#(d), "#
          + #""tensorSecondsMedian": \#(t), "ratio": \#(t / d), "tensorGflops": \#(flops / t / 1e9)}"#)
    } else {
      print("matmul \(n)x\(n)x\(n), \(Parallel.threadCount) threads, median of \(repeats):")
      print(String(format: "  cblas_sgemm direct  %.5f s  %.1f GFLOP/s", d, flops / d / 1e9))
      print(String(format: "  Tensor matmul       %.5f s  %.1f GFLOP/s  (%.3f x direct)", t, flops / t / 1e9, t / d))
    }
  }
}
