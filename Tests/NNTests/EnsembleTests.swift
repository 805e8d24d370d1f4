import Foundation
import Reprise
import TestSupport
import XCTest

/// Ensembles: the mean of the models' softmax outputs, and each model's and the ensemble's metrics.
final class EnsembleTests: XCTestCase {
  /// Three linear classifiers of 2 features into 3 classes, and 20 images of shape [1, 1, 2].
  func setting() throws -> (models: [any Layer], data: Dataset, images: Tensor) {
    RandomGenerator.global = RandomGenerator(seed: 4)
    let models: [any Layer] = (0..<3).map { _ in Sequential([Flatten(), Linear(inputFeatures: 2, outputFeatures: 3)]) }
    var random = RandomGenerator(seed: 5)
    let pixels = (0..<40).map { _ in Float(random.nextUnit(Double.self) * 4 - 2) }
    let data = try Dataset(pixels: .floats(pixels), imageShape: [1, 1, 2], labels: (0..<20).map { $0 % 3 }, classCount: 3)
    return (models, data, Tensor(pixels, shape: [20, 1, 1, 2]))
  }

  func testEnsembleProbabilitiesAreTheMeanOfTheSoftmaxOutputs() throws {
    let (models, _, images) = try setting()
    let softmaxes = models.map { model in softmax(withoutRecording { model(Variable(images)).value }.converted(to: .float64), alongAxis: 1) }
    assertClose(ensembleProbabilities(models, images), (softmaxes[0] + softmaxes[1] + softmaxes[2]) * (1.0 / 3), relativeTolerance: 1e-12)
    assertClose(ensembleProbabilities([models[1]], images), softmaxes[1], relativeTolerance: 1e-12)
  }

  func testEnsembleEvaluationReportsEachModelAndTheEnsembleOfTheMean() throws {
    let (models, data, images) = try setting()
    let result = evaluateEnsemble(models, on: data, batchSize: 7)
    for (model, metrics) in zip(models, result.members) {
      let alone = evaluate(model, on: data, batchSize: 7)
      XCTAssertEqual(metrics.accuracy, alone.accuracy)
      XCTAssertEqual(metrics.loss, alone.loss, accuracy: 1e-12)
    }
    // By hand: the argmax of the mean softmax, and the mean of -log of its entry at the label.
    let mean = ensembleProbabilities(models, images)
    var correct = 0, loss = 0.0
    for i in 0..<20 {
      let row = (0..<3).map { mean[i, $0] }
      if row.firstIndex(of: row.max()!) == data.labels[i] { correct += 1 }
      loss -= log(row[data.labels[i]])
    }
    XCTAssertEqual(result.ensemble.accuracy, Double(correct) / 20)
    XCTAssertEqual(result.ensemble.loss, loss / 20, accuracy: 1e-12)
    // The batches only split the sums.
    let whole = evaluateEnsemble(models, on: data, batchSize: 500)
    XCTAssertEqual(whole.ensemble.accuracy, result.ensemble.accuracy)
    XCTAssertEqual(whole.ensemble.loss, result.ensemble.loss, accuracy: 1e-12)
  }
}
