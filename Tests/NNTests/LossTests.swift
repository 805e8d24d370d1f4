import Foundation
import Reprise
import TestSupport
import XCTest

/// The regression and binary losses against scalar formulas, their gradients, gradient clipping
/// and the warm-up schedule.
final class LossTests: XCTestCase {
  var random = RandomGenerator(seed: 2029)

  func pair(_ shape: [Int], scale: Double = 2) -> (Variable, Tensor) {
    (randomLeaf(shape, using: &random, scale: scale), Tensor(randomNormal: shape, dtype: .float64, using: &random))
  }

  func assertLoss(
    _ name: String, _ loss: (Variable, Tensor) -> Variable, _ reference: (Double, Double) -> Double,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    let (x, t) = pair([3, 7])
    let xs = x.value.scalars(as: Double.self), ts = t.scalars(as: Double.self)
    let expected = zip(xs, ts).map(reference).reduce(0, +) / Double(xs.count)
    XCTAssertEqual(loss(x, t).value.scalar, expected, accuracy: 1e-12, name, file: file, line: line)
    assertGradientsCorrect(at: [x], name, file: file, line: line) { loss(x, t) }
  }

  func testRegressionLosses() {
    assertLoss("mse", { mseLoss($0, $1) }, { ($0 - $1) * ($0 - $1) })
    assertLoss("l1", { l1Loss($0, $1) }, { Swift.abs($0 - $1) })
    assertLoss("smoothL1", { smoothL1Loss($0, $1, beta: 0.5) }) { x, t in
      let d = Swift.abs(x - t)
      return d < 0.5 ? 0.5 * d * d / 0.5 : d - 0.25
    }
    let (x, t) = pair([2, 3])
    XCTAssertEqual(mseLoss(x, t, reduction: .none).shape, [2, 3])
    XCTAssertEqual(mseLoss(x, t, reduction: .sum).value.scalar, mseLoss(x, t).value.scalar * 6, accuracy: 1e-12)
  }

  func testBinaryCrossEntropyWithLogits() {
    let x = randomLeaf([4, 5], using: &random, scale: 3)
    let t = Tensor((0..<20).map { Double($0 % 3) / 2 }, shape: [4, 5])
    let xs = x.value.scalars(as: Double.self), ts = t.scalars(as: Double.self)
    let losses: [Double] = zip(xs, ts).map { x, t -> Double in
      let p: Double = 1 / (1 + Foundation.exp(-x))
      let positive: Double = t * Foundation.log(p), negative: Double = (1 - t) * Foundation.log(1 - p)
      return -(positive + negative)
    }
    let expected = losses.reduce(0, +) / 20
    XCTAssertEqual(binaryCrossEntropy(withLogits: x, targets: t).value.scalar, expected, accuracy: 1e-12)
    assertGradientsCorrect(at: [x], "binaryCrossEntropy") { binaryCrossEntropy(withLogits: x, targets: t) }
    // Logits far past where the sigmoid rounds to 0 or 1 still give finite losses and gradients.
    let extreme = Variable(Tensor([-200, 200] as [Float], shape: [2]), requiresGrad: true)
    let loss = binaryCrossEntropy(withLogits: extreme, targets: Tensor([1, 0] as [Float], shape: [2]))
    XCTAssertEqual(loss.value.scalar, 200, accuracy: 1e-3)
    loss.backward()
    XCTAssertEqual(extreme.grad?.scalars(as: Float.self), [-0.5, 0.5])
  }

  func testShapeMismatchStops() {
    assertStops(withMessageContaining: ["mseLoss: prediction [2, 3] and target [3, 2] differ in shape"], in: self) {
      _ = mseLoss(Variable(Tensor(zeros: [2, 3])), Tensor(zeros: [3, 2]))
    }
  }

  func testClipGradientNorm() {
    let a = Variable(Tensor(zeros: [2]), requiresGrad: true), b = Variable(Tensor(zeros: [1]), requiresGrad: true)
    let c = Variable(Tensor(zeros: [1]), requiresGrad: true)
    (a.grad, b.grad) = (Tensor([3, 0] as [Float], shape: [2]), Tensor([4] as [Float], shape: [1]))
    XCTAssertEqual(clipGradientNorm([a, b, c], maxNorm: 10), 5, accuracy: 1e-6)
    XCTAssertEqual(a.grad?.scalars(as: Float.self), [3, 0])
    XCTAssertEqual(clipGradientNorm([a, b, c], maxNorm: 1), 5, accuracy: 1e-6)
    XCTAssertEqual(Double(a.grad!.scalars(as: Float.self)[0]), 0.6, accuracy: 1e-6)
    XCTAssertEqual(Double(b.grad!.scalars(as: Float.self)[0]), 0.8, accuracy: 1e-6)
    XCTAssertNil(c.grad)
  }

  func testWarmupInFrontOfASchedule() {
    let schedule = LearningRateSchedule.warmup(steps: 4, then: .cosine(totalSteps: 10, minimum: 0))
    for (step, expected) in [0.2, 0.4, 0.6, 0.8].enumerated() {
      XCTAssertEqual(schedule.rate(base: 0.8, step: step), expected, accuracy: 1e-15)
    }
    XCTAssertEqual(schedule.rate(base: 0.8, step: 4), 0.8, accuracy: 1e-12)
    XCTAssertEqual(schedule.rate(base: 0.8, step: 9), LearningRateSchedule.cosine(totalSteps: 10, minimum: 0).rate(base: 0.8, step: 5), accuracy: 1e-15)
  }
}
