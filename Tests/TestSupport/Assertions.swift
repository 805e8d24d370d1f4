import Foundation
import Reprise
import XCTest

/// Asserts that two tensors have the same shape and that every pair of elements satisfies
/// `|a - b| <= absoluteTolerance + relativeTolerance * |b|`; the message names the worst element.
public func assertClose(
  _ a: Tensor, _ b: Tensor, relativeTolerance: Double = 1e-5, absoluteTolerance: Double = 1e-6,
  _ context: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line
) {
  guard a.shape == b.shape else {
    return XCTFail("shapes differ: \(a.shape) vs \(b.shape) \(context())", file: file, line: line)
  }
  let x = a.scalars(as: Double.self), y = b.scalars(as: Double.self)
  var worst = -1, worstRatio = 0.0
  for i in x.indices where x[i] != y[i] {
    let ratio = Swift.abs(x[i] - y[i]) / (absoluteTolerance + relativeTolerance * Swift.abs(y[i]))
    if !(ratio <= worstRatio) { (worst, worstRatio) = (i, ratio) }
  }
  if worst >= 0 && !(worstRatio <= 1) {
    XCTFail(
      "tensors differ at element \(worst) of \(a.shape): \(x[worst]) vs \(y[worst]) "
        + "(\(worstRatio) x tolerance) \(context())", file: file, line: line)
  }
}

/// Asserts that two tensors have the same shape, dtype and bit pattern in every element.
public func assertBitIdentical(
  _ a: Tensor?, _ b: Tensor?, _ context: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line
) {
  guard let a, let b else {
    return XCTAssert(a == nil && b == nil, "one tensor is nil \(context())", file: file, line: line)
  }
  guard a.shape == b.shape && a.dtype == b.dtype else {
    return XCTFail("shapes or dtypes differ: \(a.shape) \(a.dtype) vs \(b.shape) \(b.dtype) \(context())", file: file, line: line)
  }
  let x = a.scalars(as: Double.self), y = b.scalars(as: Double.self)
  if let i = x.indices.first(where: { x[$0].bitPattern != y[$0].bitPattern }) {
    XCTFail("tensors differ at element \(i) of \(a.shape): \(x[i]) vs \(y[i]) \(context())", file: file, line: line)
  }
}

/// A copy of `t` ([N, C, ...]) laid out channel-major: [C][N][...] in memory, the same shape.
public func channelMajor(_ t: Tensor) -> Tensor {
  let axes = [1, 0] + Array(2..<t.rank)
  return permute(permute(t, axes).contiguous(), axes)
}

/// The most bytes live at once while `body` ran, above those live before it, starting from an
/// empty allocator cache (so that no cached larger buffer serves a request and charges its size).
public func peakBytes(_ body: () throws -> Void) rethrows -> Int {
  Allocator.releaseCache()
  let base = Allocator.liveBytes
  Allocator.resetPeak()
  try body()
  return Allocator.peakBytes - base
}

/// Runs `body` with a destination of two channel-major parts of `expected`'s shape [N, C, ...],
/// split at channel `split`: the first to be written over, the second holding values (drawn from
/// `random` first, then the first part's) to be added to. Asserts that afterwards the first part
/// holds `expected`'s first channels and the second its old values plus the rest (`old + new`),
/// bit for bit; returns what `body` returns.
public func assertDeliversIntoParts<Result>(
  _ expected: Tensor, split: Int, using random: inout RandomGenerator, _ context: @autoclosure () -> String = "",
  file: StaticString = #filePath, line: UInt = #line, _ body: (GradientDestination) -> Result
) -> Result {
  let channels = expected.shape[1]
  func part(_ count: Int) -> Tensor {
    var shape = expected.shape
    shape[1] = count
    return channelMajor(Tensor(randomNormal: shape, dtype: expected.dtype, using: &random))
  }
  let old = part(channels - split), written = part(split), added = channelMajor(old.contiguous())
  let result = body(GradientDestination([(written, true), (added, false)]))
  assertBitIdentical(written, slice(expected, 0..<split, alongAxis: 1), "overwritten part \(context())", file: file, line: line)
  assertBitIdentical(added, old + slice(expected, split..<channels, alongAxis: 1), "added part \(context())", file: file, line: line)
  return result
}

/// Asserts that numerical and analytic gradients of `body` agree at `variables` (Float64 leaves),
/// with PyTorch gradcheck's tolerances unless given; the message names the worst element.
public func assertGradientsCorrect(
  at variables: [Variable], eps: Double = 1e-6, atol: Double = 1e-5, rtol: Double = 1e-3, seed: UInt64 = 0,
  _ context: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line, of body: () -> Variable
) {
  let result = checkGradients(at: variables, eps: eps, atol: atol, rtol: rtol, seed: seed, of: body)
  XCTAssert(result.passed, "\(result) \(context())", file: file, line: line)
  XCTAssertGreaterThan(result.compared, 0, "nothing compared \(context())", file: file, line: line)
}

/// A Float64 leaf of normal random values, for gradient checks.
public func randomLeaf(_ shape: [Int], using generator: inout RandomGenerator, scale: Double = 1) -> Variable {
  Variable(Tensor(randomNormal: shape, standardDeviation: scale, dtype: .float64, using: &generator), requiresGrad: true)
}

/// Runs `body` once per seed in `seeds`; a failure inside names the seed through `context`.
public func forEachSeed(_ seeds: Range<UInt64> = 0..<5, _ body: (_ seed: UInt64, _ generator: inout RandomGenerator) throws -> Void) rethrows {
  for seed in seeds {
    var generator = RandomGenerator(seed: seed)
    try body(seed, &generator)
  }
}

/// A new, empty directory under the system's temporary directory, for tests that write files.
public func makeTemporaryDirectory(_ prefix: String) throws -> String {
  let path = NSTemporaryDirectory() + "\(prefix)-\(UUID().uuidString)"
  try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  return path
}
