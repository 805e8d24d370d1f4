import Reprise
@testable import TensorModule
import XCTest

/// Optimiser steps against values computed by hand from PyTorch's update rules.
final class OptimizerTests: XCTestCase {
  /// A parameter [2] whose gradient is set by hand each step.
  func parameter() -> Variable { Variable(Tensor([1, -2] as [Double], shape: [2]), requiresGrad: true) }

  func testSGDWithMomentumDampeningAndWeightDecay() {
    let p = parameter()
    let sgd = SGD([p], learningRate: 0.1, momentum: 0.9, dampening: 0.5, weightDecay: 0.01)
    p.grad = Tensor([0.5, 1] as [Double], shape: [2])
    sgd.step()
    // g = 0.5 + 0.01 * 1 = 0.51; first buffer b = g; p = 1 - 0.1 * 0.51.
    XCTAssertEqual(p.value[0], 1 - 0.051, accuracy: 1e-12)
    p.grad = Tensor([0.25, 1] as [Double], shape: [2])
    sgd.step()
    // g = 0.25 + 0.01 * 0.949 = 0.25949; b = 0.9 * 0.51 + 0.5 * 0.25949; p -= 0.1 * b.
    let b = 0.9 * 0.51 + 0.5 * 0.25949
    XCTAssertEqual(p.value[0], 0.949 - 0.1 * b, accuracy: 1e-12)
  }

  /// A step writes the new values over the parameter's memory, which nothing else holds between
  /// steps (the momentum buffer's too: `SGDStepTests` checks that and the bits).
  func testSGDStepsInPlace() {
    let p = Variable(Tensor([1, -2, 3] as [Double], shape: [3]), requiresGrad: true)
    let sgd = SGD([p], learningRate: 0.1, momentum: 0.9)
    let place = p.value.base(Double.self)
    for _ in 0..<2 {
      p.grad = Tensor([0.5, 1, -1] as [Double], shape: [3])
      sgd.step()
      XCTAssertEqual(p.value.base(Double.self), place)
    }
    for (i, expected) in [1 - 0.05 - 0.095, -2 - 0.1 - 0.19, 3 + 0.1 + 0.19].enumerated() {
      XCTAssertEqual(p.value[i], expected, accuracy: 1e-12)
    }
  }

  func testNesterov() {
    let p = parameter()
    let sgd = SGD([p], learningRate: 0.1, momentum: 0.9, nesterov: true)
    p.grad = Tensor([1, 1] as [Double], shape: [2])
    sgd.step()  // b = 1; step = g + 0.9 b = 1.9
    XCTAssertEqual(p.value[0], 1 - 0.19, accuracy: 1e-12)
    sgd.step()  // b = 0.9 + 1 = 1.9; step = 1 + 0.9 * 1.9 = 2.71
    XCTAssertEqual(p.value[0], 0.81 - 0.271, accuracy: 1e-12)
  }

  func testAdamAndAdamW() {
    let p = parameter(), q = parameter()
    let adam = Adam([p], learningRate: 0.01, weightDecay: 0.1)
    let adamw = Adam([q], learningRate: 0.01, weightDecay: 0.1, decoupled: true)
    for (v, g) in [(p, 0.5), (q, 0.5)] { v.grad = Tensor([g, g] as [Double], shape: [2]) }
    adam.step()
    adamw.step()
    // Adam: g = 0.5 + 0.1 = 0.6; m = 0.06, v = 0.00036; m̂ = 0.6, v̂ = 0.36; p -= 0.01 * 0.6 / (0.6 + 1e-8).
    XCTAssertEqual(p.value[0], 1 - 0.01 * 0.6 / (0.6 + 1e-8), accuracy: 1e-12)
    // AdamW: p = 1 * (1 - 0.001); then p -= 0.01 * 0.5 / (0.5 + 1e-8).
    XCTAssertEqual(q.value[0], 0.999 - 0.01 * 0.5 / (0.5 + 1e-8), accuracy: 1e-12)
    // Second step with gradient 0.5 again (AdamW): m = 0.9*0.05 + 0.05 = 0.095, v = 0.999*0.00025 + 0.00025.
    adamw.step()
    let m = 0.095 / (1 - 0.81), v = (0.999 * 0.00025 + 0.00025) / (1 - 0.999 * 0.999)
    let before = 0.999 - 0.01 * 0.5 / (0.5 + 1e-8)
    XCTAssertEqual(q.value[0], before * 0.999 - 0.01 * m / (v.squareRoot() + 1e-8), accuracy: 1e-12)
  }

  func testStateRoundTrip() throws {
    let p = parameter()
    let sgd = SGD([p], learningRate: 0.1, momentum: 0.9)
    p.grad = Tensor([1, 2] as [Double], shape: [2])
    sgd.step()
    let copy = SGD([p], learningRate: 0.1, momentum: 0.9)
    try copy.load(state: sgd.state)
    XCTAssertEqual(copy.state["momentum.0"]?.scalars(as: Double.self), [1, 2])
    XCTAssertThrowsError(try copy.load(state: ["momentum.0": Tensor(zeros: [3])]))
  }

  func testSchedules() {
    XCTAssertEqual(LearningRateSchedule.constant.rate(base: 0.1, step: 99), 0.1)
    let multi = LearningRateSchedule.multiStep(milestones: [10, 20], gamma: 0.1)
    XCTAssertEqual(multi.rate(base: 1, step: 9), 1)
    XCTAssertEqual(multi.rate(base: 1, step: 10), 0.1, accuracy: 1e-15)
    XCTAssertEqual(multi.rate(base: 1, step: 25), 0.01, accuracy: 1e-15)
    let cosine = LearningRateSchedule.cosine(totalSteps: 100, minimum: 0)
    XCTAssertEqual(cosine.rate(base: 0.1, step: 0), 0.1, accuracy: 1e-15)
    XCTAssertEqual(cosine.rate(base: 0.1, step: 50), 0.05, accuracy: 1e-15)
    XCTAssertEqual(cosine.rate(base: 0.1, step: 100), 0, accuracy: 1e-15)
    let cyclic = LearningRateSchedule.cyclicCosine(totalSteps: 100, cycles: 4)
    XCTAssertEqual(cyclic.rate(base: 0.2, step: 25), 0.2, accuracy: 1e-15, "restarts every 25 steps")
    XCTAssertEqual(cyclic.rate(base: 0.2, step: 37), 0.1 * (Foundation.cos(Double.pi * 12 / 25) + 1), accuracy: 1e-15)
  }
}

import Foundation
