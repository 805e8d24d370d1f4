import Reprise
import TestSupport
import XCTest

final class TapeTests: XCTestCase {
  /// Fan-out: a value used several times receives the sum of all contributions (micrograd's
  /// test_more_ops in spirit), checked against the derivative worked out by hand.
  func testFanOutAccumulates() {
    let x = Variable(Tensor([0.5, -1.5, 2] as [Double], shape: [3]), requiresGrad: true)
    let y = x * x * x + exp(x) * x - x  // y' = 3x^2 + e^x (1 + x) - 1
    sum(y).backward()
    let expected = x.value.scalars(as: Double.self).map { 3 * $0 * $0 + Foundation.exp($0) * (1 + $0) - 1 }
    assertClose(x.grad!, Tensor(expected, shape: [3]), relativeTolerance: 1e-12)
  }

  func testLeafGradientsAccumulateAcrossPasses() {
    let w = Variable(Tensor([2] as [Double], shape: [1]), requiresGrad: true)
    for _ in 0..<3 { sum(w * 3).backward() }
    XCTAssertEqual(w.grad!.scalars(as: Double.self), [9])
    w.grad = nil
    sum(w * w).backward()
    XCTAssertEqual(w.grad!.scalars(as: Double.self), [4])
  }

  /// Backward walks the tape without recursion: a chain far deeper than any stack would allow.
  func testDeepChainDoesNotRecurse() {
    let x = Variable(Tensor(1.0, dtype: .float64), requiresGrad: true)
    var y = x
    for _ in 0..<100_000 { y = y * 1.0 }
    y.backward()
    XCTAssertEqual(x.grad!.scalar, 1)
  }

  func testBroadcastGradientsAreSummedToInputShape() {
    let a = Variable(Tensor(ones: [2, 1, 3], dtype: .float64), requiresGrad: true)
    let b = Variable(Tensor(ones: [4, 1], dtype: .float64), requiresGrad: true)
    sum(a * b).backward()
    XCTAssertEqual(a.grad!.shape, [2, 1, 3])
    XCTAssertEqual(a.grad!.scalars(as: Double.self), Array(repeating: 4, count: 6))
    XCTAssertEqual(b.grad!.shape, [4, 1])
    XCTAssertEqual(b.grad!.scalars(as: Double.self), Array(repeating: 6, count: 4))
  }

  /// A sum's gradient repeats one value along the summed axes. Added to a gradient already there
  /// it is added as it is, and as the first gradient of a value it is written out, so that no
  /// pullback and no leaf's `grad` holds a tensor with repeated elements.
  func testRepeatedGradientsAreWrittenOutOrAdded() {
    let x = Variable(Tensor([1, -2, 3, 4, -5, 6] as [Double], shape: [2, 3]), requiresGrad: true)
    sum(sum(x, alongAxes: [1]) * Variable(Tensor([2, 3] as [Double], shape: [2]))).backward()
    XCTAssertFalse(x.grad!.strides.contains(0), "the first gradient is written out: strides \(x.grad!.strides)")
    XCTAssertEqual(x.grad!.scalars(as: Double.self), [2, 2, 2, 3, 3, 3])
    // 2x, plus 1/2 from the mean once per row. The tape runs the newest operation first: squares
    // taken before the mean receive their gradient after it, and the other way round.
    for squaresFirst in [true, false] {
      x.grad = nil
      let earlySquares = squaresFirst ? x * x : nil
      let columnMeans = mean(x, alongAxes: [0], keepingDimensions: true)
      sum((earlySquares ?? x * x) + columnMeans).backward()
      XCTAssertEqual(x.grad!.scalars(as: Double.self), [1, -2, 3, 4, -5, 6].map { 2 * $0 + 1 })
    }
    let y = Variable(Tensor(ones: [2, 3], dtype: .float64), requiresGrad: true)
    relu(mean(y, alongAxes: [1], keepingDimensions: true)).backward(seed: Tensor(ones: [2, 1], dtype: .float64))
    XCTAssertFalse(y.grad!.strides.contains(0), "a pullback's input is written out: strides \(y.grad!.strides)")
    assertClose(y.grad!, Tensor(Array(repeating: 1.0 / 3, count: 6), shape: [2, 3]))
  }

  /// A repeated gradient written out takes the layout of the value it is the gradient of, as the
  /// other gradients of that value do: a channel-major feature map's, from a global pooling, is
  /// channel-major.
  func testWrittenOutGradientTakesTheValuesLayout() {
    let columns = Tensor([1, -2, 3, 4, -5, 6] as [Double], shape: [2, 3]).laidOut(like: [1, 2])
    let x = Variable(columns, requiresGrad: true)
    (sum(x, alongAxes: [1]) * Variable(Tensor([2, 3] as [Double], shape: [2]))).backward(seed: Tensor(ones: [2], dtype: .float64))
    XCTAssertEqual(x.grad!.strides, [1, 2], "the gradient is laid out like the value")
    XCTAssertEqual(x.grad!.scalars(as: Double.self), [2, 2, 2, 3, 3, 3])
    // A map [N, C, H, W] stored channel-major, pooled to [N, C]: the pooling's gradient, the first
    // gradient of the map, is channel-major too.
    let map = Variable(Tensor(ones: [2, 3, 2, 2], dtype: .float64).laidOut(like: [4, 8, 2, 1]), requiresGrad: true)
    let features = relu(map)
    XCTAssertEqual(features.value.strides, [4, 8, 2, 1])
    let pooled = mean(features, alongAxes: [2, 3])
    (pooled * pooled).backward(seed: Tensor(ones: [2, 3], dtype: .float64))
    XCTAssertEqual(map.grad!.strides, [4, 8, 2, 1])
    assertClose(map.grad!, Tensor(Array(repeating: 0.5, count: 24), shape: [2, 3, 2, 2]))
  }

  func testWithoutRecordingBuildsNoGraph() {
    let x = Variable(Tensor(ones: [3]), requiresGrad: true)
    let y = withoutRecording { exp(x) * 2 }
    XCTAssertTrue(y.isLeaf)
    XCTAssertFalse(y.requiresGrad)
    XCTAssertTrue(isRecording)
    XCTAssertFalse(withoutRecording { isRecording })
  }

  func testLearningPhaseScopeRestores() {
    XCTAssertEqual(LearningPhase.current, .training)
    withLearningPhase(.inference) {
      XCTAssertEqual(LearningPhase.current, .inference)
      withLearningPhase(.training) { XCTAssertEqual(LearningPhase.current, .training) }
      XCTAssertEqual(LearningPhase.current, .inference)
    }
    XCTAssertEqual(LearningPhase.current, .training)
  }

  /// Saved tensors are freed as each entry's pullback runs: after backward nothing of the forward
  /// pass is held, even though the output variable itself is still alive.
  func testBackwardReleasesSavedTensors() {
    Allocator.releaseCache()  // charges then equal requests: no cached larger buffer serves them
    let x = Variable(Tensor(randomNormal: [256, 256]), requiresGrad: true)
    let before = Allocator.liveBytes
    let loss = sum(exp(relu(x) * 2) * x)
    XCTAssertGreaterThanOrEqual(Allocator.liveBytes - before, 2 * 256 * 256 * 4)  // relu's and exp's outputs
    loss.backward()
    // Left: the scalar loss and x's gradient (one 256 KiB tensor).
    XCTAssertLessThanOrEqual(Allocator.liveBytes - before, 256 * 256 * 4 + 64)
    withExtendedLifetime(loss) {}
  }

  /// A dropped forward pass frees itself: the entries belong to the values, not to a global tape.
  func testAbandonedForwardPassFreesItself() {
    Allocator.releaseCache()  // charges then equal requests: no cached larger buffer serves them
    let x = Variable(Tensor(randomNormal: [128, 128]), requiresGrad: true)
    let before = Allocator.liveBytes
    do { _ = sum(exp(x) * x) }
    XCTAssertEqual(Allocator.liveBytes, before)
  }

  func testSecondBackwardThroughFreedGraphStops() {
    assertStops(withMessageContaining: ["was already backpropagated through"], in: self) {
      let x = Variable(Tensor(ones: [2]), requiresGrad: true)
      let y = sum(exp(x))
      y.backward()
      y.backward()
    }
  }

  /// A user-defined operation: forward and pullback through the public API, checked numerically.
  func testUserDefinedOperation() {
    func cube(_ x: Variable) -> Variable {
      let value = x.value
      return recordOperation("cube", value * value * value, inputs: [x]) { [value] grad in [grad * value * value * 3] }
    }
    var random = RandomGenerator(seed: 3)
    let x = randomLeaf([4, 3], using: &random)
    assertGradientsCorrect(at: [x]) { cube(x) }
  }

  /// The gradient check can fail: a pullback that is off by a factor is caught, and the report
  /// names the worst element.
  func testGradientCheckCatchesWrongPullback() {
    func wrongSquare(_ x: Variable) -> Variable {
      let value = x.value
      return recordOperation("wrongSquare", value * value, inputs: [x]) { [value] grad in [grad * value * 2.01] }
    }
    var random = RandomGenerator(seed: 4)
    let x = randomLeaf([5], using: &random)
    let result = checkGradients(at: [x]) { wrongSquare(x) }
    XCTAssertFalse(result.passed)
    XCTAssertEqual(result.compared, 5)
    XCTAssertNotNil(result.worst)
    XCTAssertTrue(result.description.contains("worst is variable 0 at"), result.description)
    // The inputs come back unchanged.
    XCTAssertNil(x.grad)
  }
}

import Foundation
