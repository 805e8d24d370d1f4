import Foundation
import Reprise
import RepriseDistributed
import XCTest

/// The script of docs/distributed.md, run on a small generated data set in one process.
final class DistributedExampleTests: XCTestCase {
  func testScript() throws {
    var random = RandomGenerator(seed: 3)
    let pixels = (0..<96 * 28 * 28).map { _ in UInt8(random.next() % 256) }
    let train = try Dataset(pixels: .bytes(pixels), imageShape: [1, 28, 28], labels: (0..<96).map { $0 % 10 }, classCount: 10)
    let test = train
    let path = NSTemporaryDirectory() + "distributed-densenet.safetensors"
    // --- docs/distributed.md example begins (with `train` and `test` as above, depth 10) ---
    let communicator = try Communicator.world()
    let model = DenseNet(try .cifar(depth: 10, growthRate: 4, bottleneck: true, inputChannels: 1))
    let optimizer = SGD(model.parameters, learningRate: 0.1, momentum: 0.9, weightDecay: 1e-4, nesterov: true)
    let parallel = try DataParallel(model, communicator: communicator, synchronizingBatchNorm: true)
    let sampler = try ShardedSampler(count: train.count, globalBatchSize: 64, rank: communicator.rank, size: communicator.size)
    var generator = RandomGenerator(seed: 1)
    let order = train.order(epoch: 0, seed: 1, shuffle: true)
    try withCheckpointPlan(model.memoryEfficientPlan(), in: model) {
      for step in 0..<sampler.stepsPerEpoch {
        let batch = Array(order[sampler.globalBatch(step)])
        let (images, labels) = train.batch(batch, using: &generator, part: sampler.part(ofBatchOf: batch.count))
        let metrics = parallel.trainStep(optimizer: optimizer, images: images, labels: labels, globalBatchSize: batch.count)
        if communicator.isRoot && step % 100 == 0 { print("step \(step): loss \(metrics.loss)") }
      }
    }
    let accuracy = evaluate(model, on: test, communicator: communicator).accuracy
    if communicator.isRoot { try model.saveState(to: path) }
    // --- docs/distributed.md example ends ---
    XCTAssertEqual(sampler.stepsPerEpoch, 2)
    XCTAssertEqual(accuracy, evaluate(model, on: test).accuracy)
    let reloaded = DenseNet(try .cifar(depth: 10, growthRate: 4, bottleneck: true, inputChannels: 1))
    try reloaded.loadState(from: path)
    XCTAssertEqual(evaluate(reloaded, on: test).loss, evaluate(model, on: test).loss, accuracy: 1e-6)
  }
}
