import Reprise
import RepriseDistributed
import TestSupport
import XCTest

/// ``DataParallel`` in a run of one process (the test is not under mpirun): the bucketed
/// reduction hands back exactly the gradients a plain step computes, whichever overlap, and
/// parameters no process reached keep no gradient.
final class DataParallelTests: XCTestCase {
  /// Two layers, the second unused, with a checkpoint region around part of the first's use.
  final class PartlyUsed: Layer {
    let first = Linear(inputFeatures: 6, outputFeatures: 5), second = Linear(inputFeatures: 5, outputFeatures: 3)
    let unused = Linear(inputFeatures: 6, outputFeatures: 3)
    var children: [(name: String, module: any Module)] { [("first", first), ("second", second), ("unused", unused)] }
    func callAsFunction(_ input: Variable) -> Variable {
      second(checkpoint(input) { [first] x in tanh(first(x)) })
    }
  }

  func testOneProcessTakesThePlainStepWithEveryOverlap() throws {
    let communicator = try Communicator.world()
    XCTAssertEqual(communicator.size, 1)
    var random = RandomGenerator(seed: 3)
    let images = Tensor(randomNormal: [8, 6], using: &random), labels = (0..<8).map { $0 % 3 }
    for overlap in GradientOverlap.allCases {
      RandomGenerator.global = RandomGenerator(seed: 11)
      let (plain, parallelModel) = (PartlyUsed(), PartlyUsed())
      try parallelModel.load(entries: Dictionary(uniqueKeysWithValues: plain.stateEntries.map { ($0.0, $0.1) }))
      let sgd = { (m: PartlyUsed) in SGD(m.parameters, learningRate: 0.1, momentum: 0.9, weightDecay: 1e-2, nesterov: true) }
      let (plainOptimizer, parallelOptimizer) = (sgd(plain), sgd(parallelModel))
      // Buckets of 64 bytes: one or two parameters each.
      let parallel = try DataParallel(parallelModel, communicator: communicator, bucketBytes: 64, overlap: overlap)
      for _ in 0..<3 {
        let expected = trainStep(plain, optimizer: plainOptimizer, images: images, labels: labels)
        let got = parallel.trainStep(optimizer: parallelOptimizer, images: images, labels: labels, globalBatchSize: 8)
        XCTAssertEqual(got.loss, expected.loss, "\(overlap)")
      }
      for (a, b) in zip(plain.namedParameters, parallelModel.namedParameters) {
        assertBitIdentical(b.variable.value, a.variable.value, "\(overlap): \(a.name)")
        XCTAssertEqual(b.variable.grad == nil, a.variable.grad == nil, "\(overlap): \(a.name)")
      }
      XCTAssertNil(parallelModel.unused.weight.grad, "\(overlap)")
    }
  }
}
