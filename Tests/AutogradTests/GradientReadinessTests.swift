import Reprise
import TestSupport
import XCTest

/// `backward(seed:onGradientReady:betweenOperations:)`: each leaf is announced once, with its
/// complete gradient, as soon as the backward pass has added its last contribution, and never
/// while a checkpoint region is replayed.
final class GradientReadinessTests: XCTestCase {
  /// Announces leaves with a copy of their gradient at that moment and the operations run before.
  final class Recorder {
    var announced: [(name: String, grad: Tensor, operationsBefore: Int)] = []
    var operations = 0
    func ready(_ leaf: Variable) { announced.append((leaf.name ?? "?", leaf.grad!, operations)) }
  }

  func leaf(_ name: String, _ shape: [Int], _ generator: inout RandomGenerator) -> Variable {
    Variable(Tensor(randomNormal: shape, dtype: .float64, using: &generator), requiresGrad: true, name: name)
  }

  /// Runs `loss` twice, plainly and with the hooks, and checks each announcement against the
  /// final gradients; returns the recorder.
  func check(_ leaves: [Variable], _ loss: () -> Variable, file: StaticString = #filePath, line: UInt = #line) -> Recorder {
    loss().backward()
    let final = leaves.map { $0.grad }
    for l in leaves { l.grad = nil }
    let recorder = Recorder()
    loss().backward(onGradientReady: recorder.ready, betweenOperations: { recorder.operations += 1 })
    for (l, expected) in zip(leaves, final) {
      let times = recorder.announced.filter { $0.name == l.name }
      guard let expected else {
        XCTAssert(times.isEmpty, "\(l.name!) received no gradient but was announced", file: file, line: line)
        continue
      }
      XCTAssertEqual(times.count, 1, "\(l.name!) announced \(times.count) times", file: file, line: line)
      if let first = times.first { assertBitIdentical(first.grad, expected, file: file, line: line) }
    }
    return recorder
  }

  func testSharedWeightsAreAnnouncedOnceWithTheirWholeGradient() {
    var g = RandomGenerator(seed: 1)
    let x = Variable(Tensor(randomNormal: [4, 3], dtype: .float64, using: &g))
    let w = leaf("w", [3, 3], &g), b = leaf("b", [3], &g), unused = leaf("unused", [2], &g)
    // w is used three times, like a recurrent weight over three time steps.
    let recorder = check([w, b, unused]) {
      var h = x
      for _ in 0..<3 { h = tanh(matmul(h, w) + b) }
      return sum(h * h)
    }
    XCTAssertEqual(recorder.announced.map(\.name).sorted(), ["b", "w"])
  }

  func testLeavesAreAnnouncedDuringTheBackwardPassInReverseOrderOfUse() {
    var g = RandomGenerator(seed: 2)
    let x = Variable(Tensor(randomNormal: [2, 4], dtype: .float64, using: &g))
    let layers = (0..<4).map { leaf("w\($0)", [4, 4], &g) }
    let recorder = check(layers) { sum(layers.reduce(x) { relu(matmul($0, $1)) }) }
    XCTAssertEqual(recorder.announced.map(\.name), ["w3", "w2", "w1", "w0"])
    // The last layer's weight is ready long before the backward pass ends.
    XCTAssertLessThan(recorder.announced[0].operationsBefore, recorder.announced[3].operationsBefore)
  }

  func testLeavesACheckpointRegionUsesAreAnnouncedOnlyAfterItsReplay() {
    var g = RandomGenerator(seed: 3)
    let x = Variable(Tensor(randomNormal: [2, 4], dtype: .float64, using: &g))
    let inside = leaf("inside", [4, 4], &g), both = leaf("both", [4, 4], &g), input = leaf("input", [2, 4], &g)
    let after = leaf("after", [4, 4], &g)
    // `inside` is used twice within the region, so an announcement during the replay would carry
    // half its gradient; `both` gets contributions inside the region and after it; `input` is a
    // leaf passed to the region.
    let recorder = check([inside, both, input, after]) {
      let y = checkpoint([x, input]) { v in
        [matmul(tanh(matmul(v[0] + v[1], inside)), inside) + matmul(v[0], both)]
      }[0]
      return sum(matmul(tanh(matmul(y, both)), after))
    }
    XCTAssertEqual(recorder.announced.first?.name, "after")
    XCTAssertEqual(Set(recorder.announced.map(\.name)), ["inside", "both", "input", "after"])
  }

  func testNestedRegionsAndPlansAnnounceCompleteGradients() {
    var g = RandomGenerator(seed: 4)
    let x = Variable(Tensor(randomNormal: [3, 5], dtype: .float64, using: &g))
    let ws = (0..<6).map { leaf("w\($0)", [5, 5], &g) }
    let steps: [(Variable) -> Variable] = ws.map { w in { v in tanh(matmul(v, w)) } }
    _ = check(ws) {
      let outer = checkpoint(x) { v in
        checkpoint(checkpointed(Array(steps[0..<4]), segments: 2, v)) { u in steps[4](steps[5](u)) }
      }
      return sum(outer * outer)
    }
  }
}
