import Reprise
import XCTest

/// Asserts that one training step of the network `make(false)` (plain) and of `make(true)`
/// (memory-efficient) gives bit-identical parameter gradients and buffers (running statistics).
///
/// Both are built after seeding the global generator with 42 and run after seeding it with 9 (so
/// dropout, shake-shake and stochastic depth draw the same), on the same batch of 4 images shaped
/// `imageShape` and labels 0, 1, 2, 1. Parameters that received no gradient count as zeros.
public func assertMemoryEfficientEqualsPlain(
  imageShape: [Int], _ context: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line,
  _ make: (_ memoryEfficient: Bool) throws -> any Layer
) rethrows {
  var results: [[Tensor]] = []
  for efficient in [false, true] {
    RandomGenerator.global = RandomGenerator(seed: 42)
    let model = try make(efficient)
    RandomGenerator.global = RandomGenerator(seed: 9)
    var random = RandomGenerator(seed: 2)
    let x = Variable(Tensor(randomNormal: [4] + imageShape, using: &random))
    crossEntropy(model(x), labels: [0, 1, 2, 1]).backward()
    results.append(model.parameters.map { $0.grad ?? Tensor(zeros: $0.shape) } + model.namedBuffers.map(\.variable.value))
  }
  XCTAssertEqual(results[0].count, results[1].count, context(), file: file, line: line)
  for (i, (a, b)) in zip(results[0], results[1]).enumerated() {
    assertBitIdentical(a, b, "\(context()) tensor \(i)", file: file, line: line)
  }
}
