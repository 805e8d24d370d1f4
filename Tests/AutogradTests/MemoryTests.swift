import Reprise
import TestSupport
import XCTest

/// What checkpointing saves, measured in the allocator's bytes.
final class MemoryTests: XCTestCase {
  /// 64 residual steps x + relu(x * w_i) * 0.5 on a million elements: with `checkpointed(segments: 8)`
  /// the peak during forward and backward is at most a quarter of the plain run's, and the gradients
  /// of the input and of all 64 captured parameters are bit-identical.
  func testSixtyFourResidualStepsInAQuarterOfTheMemory() {
    var random = RandomGenerator(seed: 64)
    let x = Variable(Tensor(randomNormal: [1000, 1000], using: &random), requiresGrad: true)
    let weights = (0..<64).map { _ in Variable(Tensor(randomNormal: [1], standardDeviation: 0.1, using: &random), requiresGrad: true) }
    let steps: [(Variable) -> Variable] = weights.map { w in { v in v + relu(v * w) * 0.5 } }
    let leaves = [x] + weights

    func run(_ forward: () -> Variable) -> (peak: Int, gradients: [Tensor]) {
      for l in leaves { l.grad = nil }
      let peak = peakBytes { forward().backward() }  // both runs start from an empty cache
      defer { for l in leaves { l.grad = nil } }
      return (peak, leaves.map { $0.grad! })
    }
    let plain = run { mean(steps.reduce(x) { $1($0) }) }
    let checked = run { mean(checkpointed(steps, segments: 8, x)) }
    print("64-step chain, 1M elements: plain peak \(plain.peak) bytes, checkpointed(segments: 8) peak \(checked.peak) bytes, ratio \(Double(checked.peak) / Double(plain.peak))")
    XCTAssertLessThanOrEqual(checked.peak * 4, plain.peak)
    for (i, (p, c)) in zip(plain.gradients, checked.gradients).enumerated() { assertBitIdentical(p, c, "leaf \(i)") }
  }
}
