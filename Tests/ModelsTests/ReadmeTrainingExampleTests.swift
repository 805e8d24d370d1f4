import Reprise
import XCTest

/// The training script of README.md, run on a small generated data set instead of Fashion-MNIST.
final class ReadmeTrainingExampleTests: XCTestCase {
  func testTrainingScript() throws {
    var random = RandomGenerator(seed: 3)
    let pixels = (0..<128 * 28 * 28).map { _ in UInt8(random.next() % 256) }
    let train = try Dataset(pixels: .bytes(pixels), imageShape: [1, 28, 28], labels: (0..<128).map { $0 % 10 }, classCount: 10)
    let test = train
    // --- README example begins (with `train` and `test` loaded as above) ---
    RandomGenerator.global = RandomGenerator(seed: 0)
    let model = DenseNet(try .cifar(depth: 10, growthRate: 4, bottleneck: true, inputChannels: 1))
    let optimizer = SGD(model.parameters, learningRate: 0.1, momentum: 0.9, weightDecay: 1e-4, nesterov: true)
    let schedule = LearningRateSchedule.cosine(totalSteps: 2, minimum: 0)
    var generator = RandomGenerator(seed: 1)
    try withCheckpointPlan(model.memoryEfficientPlan(), in: model) {
      for step in 0..<2 {
        let indices = Array(train.order(epoch: 0, seed: 1, shuffle: true)[(step * 64)..<(step * 64 + 64)])
        let (images, labels) = train.batch(indices, using: &generator)
        optimizer.learningRate = schedule.rate(base: 0.1, step: step)
        let metrics = trainStep(model, optimizer: optimizer, images: images, labels: labels)
        print("step \(step): loss \(metrics.loss)")
      }
    }
    print("test accuracy \(evaluate(model, on: test).accuracy)")
    try model.saveState(to: NSTemporaryDirectory() + "readme-densenet.safetensors")
    // --- README example ends ---
    let reloaded = DenseNet(try .cifar(depth: 10, growthRate: 4, bottleneck: true, inputChannels: 1))
    try reloaded.loadState(from: NSTemporaryDirectory() + "readme-densenet.safetensors")
    XCTAssertEqual(evaluate(reloaded, on: test).loss, evaluate(model, on: test).loss, accuracy: 1e-6)
  }
}

import Foundation
