import Foundation
import Reprise
import TestSupport
import XCTest

/// The `reprise` tool as a user runs it: exit codes, one-line errors, JSON that parses, and a
/// train, eval, predict and resume cycle on a tiny data set.
final class CommandLineTests: XCTestCase {
  var directory: String!

  override func setUpWithError() throws { directory = try makeTemporaryDirectory("reprise-cli") }

  override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

  /// Runs the tool built beside the test bundle; returns its status, standard output and error.
  func reprise(_ arguments: String..., file: StaticString = #filePath, line: UInt = #line) throws -> (status: Int32, out: String, err: String) {
    try reprise(arguments, file: file, line: line)
  }

  /// ``reprise(_:file:line:)`` with the arguments as an array.
  func reprise(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> (status: Int32, out: String, err: String) {
    let result = try runProgram(repriseBinary, arguments, in: directory)
    XCTAssertEqual(result.reason, .exit, "reprise \(arguments) was killed by a signal: \(result.err)", file: file, line: line)
    return (result.status, result.out, result.err)
  }

  /// A data set of `count` 1x8x8 images with labels 0 and 1, as a safetensors file.
  func dataSet(_ name: String, count: Int = 8) throws -> String {
    var random = RandomGenerator(seed: 9)
    let images = Tensor(randomNormal: [count, 1, 8, 8], using: &random)
    let path = directory + "/" + name
    try SafeTensors.write(
      [("images", SafeTensors.Entry(images)), ("labels", SafeTensors.Entry(integers: (0..<count).map { Int64($0 % 2) }, shape: [count]))],
      to: path)
    return path
  }

  func testArgumentErrorsExitWithUsageStatusAndOneLine() throws {
    let cases: [([String], String)] = [
      (["train", "--batch-size", "9223372036854775807"], "--batch-size must be in 1...1048576"),
      (["train", "--init-channels", "0"], "--init-channels must be in 1...4096"),
      (["train", "--compression", "0.01"], "leaves transition 1 without channels"),
      (["train", "--lr", "inf"], "--lr must be positive and finite"),
      (["train", "--weight-decay", "nan"], "--weight-decay must be finite"),
      (["train", "--model", "seqresnet", "--blocks-per-stage", "0"], "--blocks-per-stage must be in 1...100"),
      (["train", "--model", "nosuchnet"], "densenet-bc"),
      (["train", "--save", "/nonexistent/model.safetensors"], "the directory /nonexistent does not exist"),
      (["predict", "--threads", "0", "--weights", "w", "--input", "i", "--output", "o"], "--threads must be in 1...256"),
      (["bench", "--threads", "1000"], "--threads must be in 1...256"),
      (["bench", "--kernel", "conv2d", "--convolution", "8,3"], "--convolution must be O,K,S,P or O,K,S,P,G"),
      (["bench", "--kernel", "conv2d", "--convolution", "8,3,1,1,3"], "must both be divisible by 3 groups"),
      (["bench", "--kernel", "conv2d", "--convolution", "8,40,1,1"], "larger than the padded 32x32 input"),
      (["bench", "--convolution", "8,3,1,1"], "--convolution is for --kernel conv2d"),
      (["bench", "--compare-threads", "0"], "--compare-threads must be in 1...256"),
      (["bench", "--kernel", "conv2d", "--compare-threads", "1"], "--compare-threads times a model's steps, --kernel stream or --kernel matmul"),
      (["bench", "--kernel", "stream", "--size", "0"], "--size must be in 1...268435456"),
      (["summary", "--input-size", "3,2,2"], "smaller than densenet-bc's smallest input, 4x4"),
      (["eval", "--weights", "missing.safetensors"], "does not exist"),
      (["train", "--sync-batch-norm"], "--sync-batch-norm, --gradient-overlap and --bucket-size need --distributed"),
      (["train", "--distributed", "--micro-batches", "2"], "--micro-batches does not combine with --distributed"),
      (["train", "--micro-batches", "65"], "--micro-batches must be in 1...64"),
    ]
    for (arguments, message) in cases {
      let result = try reprise(arguments)
      XCTAssertEqual(result.status, 64, "\(arguments): \(result.err)")
      XCTAssert(result.err.hasPrefix("reprise: ") && result.err.contains(message), "\(arguments): \(result.err)")
      XCTAssertEqual(result.err.split(separator: "\n").count, 1, "\(arguments): \(result.err)")
    }
  }

  func testJSONOutputsParse() throws {
    let summary = try reprise("summary", "--depth", "10", "--json")
    XCTAssertEqual(summary.status, 0, summary.err)
    let object = try JSONSerialization.jsonObject(with: Data(summary.out.utf8)) as? [String: Any]
    XCTAssertEqual(object?["model"] as? String, "densenet-bc-10-k12")
    XCTAssertEqual((object?["stages"] as? [Any])?.isEmpty, false)
    let bench = try reprise("bench", "--depth", "10", "--batch-size", "2", "--steps", "1", "--input-size", "3,8,8", "--json")
    XCTAssertEqual(bench.status, 0, bench.err)
    let timing = try JSONSerialization.jsonObject(with: Data(bench.out.utf8)) as? [String: Any]
    XCTAssertNotNil(timing?["stepSecondsMedian"] as? Double)
    XCTAssertNil(timing?["speedup"] as? Double)
    XCTAssertNil(timing?["busyTimeRatio"] as? Double)
    XCTAssertNotNil(timing?["busyFraction"] as? Double)
    // Two thread counts in turn: each has its own steps, and the speedup is the ratio of their medians.
    let scaling = try reprise(
      "bench", "--depth", "10", "--batch-size", "2", "--steps", "3", "--input-size", "3,8,8", "--threads", "2", "--compare-threads", "1",
      "--json")
    XCTAssertEqual(scaling.status, 0, scaling.err)
    let scaled = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(scaling.out.utf8)) as? [String: Any])
    XCTAssertEqual(scaled["threads"] as? Int, 2)
    XCTAssertEqual(scaled["compareThreads"] as? Int, 1)
    XCTAssertEqual((scaled["stepSeconds"] as? [Double])?.count, 3)
    let compared = try XCTUnwrap(scaled["compareStepSeconds"] as? [Double])
    XCTAssertEqual(compared.count, 3)
    let comparedMedian = try XCTUnwrap(scaled["compareStepSecondsMedian"] as? Double)
    XCTAssertEqual(comparedMedian, compared.sorted()[1])
    let speedup = try XCTUnwrap(scaled["speedup"] as? Double)
    XCTAssertEqual(speedup, comparedMedian / (try XCTUnwrap(scaled["stepSecondsMedian"] as? Double)), accuracy: 1e-12)
    // The pool's work on each count: a thread's busy seconds, its share of the threads' time, and
    // the ratio of the two counts' work, which with the shares gives the ratio of the mean steps.
    XCTAssertEqual((scaled["busySecondsPerStep"] as? [Double])?.count, 2)
    XCTAssertEqual((scaled["compareBusySecondsPerStep"] as? [Double])?.count, 1)
    let (busy, comparedBusy) = (try XCTUnwrap(scaled["busyFraction"] as? Double), try XCTUnwrap(scaled["compareBusyFraction"] as? Double))
    XCTAssert(busy > 0 && busy <= 1, "busy fraction \(busy)")
    XCTAssert((0...1).contains(try XCTUnwrap(scaled["takenIndexFraction"] as? Double)))
    let ratio = try XCTUnwrap(scaled["busyTimeRatio"] as? Double)
    XCTAssertEqual(comparedBusy, 1, accuracy: 1e-12, "one thread waits for none")
    let means = compared.reduce(0, +) / (try XCTUnwrap(scaled["stepSeconds"] as? [Double])).reduce(0, +)
    XCTAssertEqual(2 * busy / comparedBusy / ratio, means, accuracy: 1e-3 * means)
    XCTAssert((0..<1).contains(try XCTUnwrap(scaled["callerWaitFraction"] as? Double)))
    let convolution = try reprise(
      "bench", "--kernel", "conv2d", "--batch-size", "2", "--input-size", "4,9,9", "--convolution", "6,3,2,1", "--steps", "1", "--json")
    XCTAssertEqual(convolution.status, 0, convolution.err)
    let kernel = try JSONSerialization.jsonObject(with: Data(convolution.out.utf8)) as? [String: Any]
    XCTAssertEqual(kernel?["output"] as? [Int], [2, 6, 5, 5])
    XCTAssertNotNil(kernel?["weightGradientSecondsMedian"] as? Double)
    // Both gradients at once count twice the operations of one pass.
    let both = try XCTUnwrap(kernel?["gradientsSecondsMedian"] as? Double), forward = try XCTUnwrap(kernel?["forwardSecondsMedian"] as? Double)
    let perSecond = try XCTUnwrap(kernel?["forwardGflops"] as? Double) * forward
    XCTAssertEqual(try XCTUnwrap(kernel?["gradientsGflops"] as? Double), 2 * perSecond / both, accuracy: 1e-9 * perSecond / both)
    // The stream's passes in turn on two counts, as a model's steps; its rate counts 12 bytes an element.
    let stream = try reprise(
      "bench", "--kernel", "stream", "--size", "4096", "--steps", "3", "--threads", "2", "--compare-threads", "1", "--json")
    XCTAssertEqual(stream.status, 0, stream.err)
    let streamed = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(stream.out.utf8)) as? [String: Any])
    XCTAssertEqual(streamed["kernel"] as? String, "stream")
    XCTAssertEqual(streamed["elements"] as? Int, 4096)
    XCTAssertEqual((streamed["passSeconds"] as? [Double])?.count, 3)
    let streamMedian = try XCTUnwrap(streamed["secondsMedian"] as? Double)
    XCTAssertEqual(try XCTUnwrap(streamed["bytesPerSecond"] as? Double), 12 * 4096 / streamMedian, accuracy: 1e-6 * 12 * 4096 / streamMedian)
    let comparedPasses = try XCTUnwrap(streamed["comparePassSeconds"] as? [Double])
    XCTAssertEqual(comparedPasses.count, 3)
    XCTAssertEqual(streamed["compareSecondsMedian"] as? Double, comparedPasses.sorted()[1])
    XCTAssertEqual(try XCTUnwrap(streamed["speedup"] as? Double), comparedPasses.sorted()[1] / streamMedian, accuracy: 1e-12)
    // The pool's product in turn on two counts, large enough to be split; the direct call is timed as before.
    let product = try reprise("bench", "--kernel", "matmul", "--size", "256", "--steps", "11", "--threads", "2", "--compare-threads", "1", "--json")
    XCTAssertEqual(product.status, 0, product.err)
    let multiplied = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(product.out.utf8)) as? [String: Any])
    XCTAssertEqual(multiplied["compareThreads"] as? Int, 1)
    let comparedProducts = try XCTUnwrap(multiplied["compareTensorSeconds"] as? [Double])
    XCTAssertEqual(comparedProducts.count, 11)
    XCTAssertEqual(multiplied["compareTensorSecondsMedian"] as? Double, comparedProducts.sorted()[5])
    let productMedian = try XCTUnwrap(multiplied["tensorSecondsMedian"] as? Double)
    XCTAssertEqual(try XCTUnwrap(multiplied["speedup"] as? Double), comparedProducts.sorted()[5] / productMedian, accuracy: 1e-12)
    XCTAssertGreaterThan(try XCTUnwrap(multiplied["busyTimeRatio"] as? Double), 0)
    XCTAssertNotNil(multiplied["compareBusyFraction"] as? Double)
    let trip = try reprise("bench", "--kernel", "roundtrip", "--json")
    XCTAssertEqual(trip.status, 0, trip.err)
    let roundTrip = try JSONSerialization.jsonObject(with: Data(trip.out.utf8)) as? [String: Any]
    let nanoseconds = try XCTUnwrap(roundTrip?["nanosecondsMedian"] as? Double)
    XCTAssertGreaterThan(nanoseconds, 0)
    XCTAssertGreaterThanOrEqual(nanoseconds, try XCTUnwrap(roundTrip?["nanosecondsMin"] as? Double))
  }

  func testTrainEvaluatePredictAndResume() throws {
    let data = try dataSet("tiny.safetensors")
    let common = ["--dataset", data, "--depth", "10", "--batch-size", "4", "--threads", "1"]
    let train = try reprise(["train"] + common + ["--epochs", "2", "--max-steps", "2", "--save", "model.safetensors", "--checkpoint", "run.safetensors"])
    XCTAssertEqual(train.status, 0, train.err)
    XCTAssert(train.out.contains("Saved the model to model.safetensors"), train.out)
    // Each step's rate is timed from the start of the epoch, the first step's too: a tiny network on
    // one thread does not reach 100,000 images a second.
    let rates = train.out.split(separator: "\n").compactMap { line -> Double? in
      guard let end = line.range(of: " images/s") else { return nil }
      return Double(line[..<end.lowerBound].split(separator: " ").last ?? "")
    }
    XCTAssertEqual(rates.count, 2, train.out)
    XCTAssert(rates.allSatisfy { $0 > 0 && $0 < 100_000 }, "\(rates)")

    let evaluation = try reprise(["eval", "--weights", "model.safetensors"] + common)
    XCTAssertEqual(evaluation.status, 0, evaluation.err)
    XCTAssert(evaluation.out.contains("(8 images)"), evaluation.out)

    var random = RandomGenerator(seed: 1)
    try SafeTensors.write([("input", SafeTensors.Entry(Tensor(randomNormal: [3, 1, 8, 8], using: &random)))], to: directory + "/input.safetensors")
    let predict = try reprise("predict", "--depth", "10", "--classes", "2", "--weights", "model.safetensors", "--input", "input.safetensors", "--output", "logits.safetensors")
    XCTAssertEqual(predict.status, 0, predict.err)
    XCTAssertEqual(try SafeTensors.read(directory + "/logits.safetensors").entries["logits"]?.shape, [3, 2])

    // The same run continues; a changed one is refused with its differences named.
    let resumed = try reprise(["train"] + common + ["--epochs", "2", "--resume", "run.safetensors", "--save", "resumed.safetensors"])
    XCTAssertEqual(resumed.status, 0, resumed.err)
    let changed = try reprise(["train", "--dataset", data, "--depth", "10", "--batch-size", "2", "--epochs", "2", "--resume", "run.safetensors"])
    XCTAssertNotEqual(changed.status, 0)
    XCTAssert(changed.err.contains("batch-size 2 (the checkpoint's: 4)"), changed.err)
    XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/densenet-bc-10-k12-tiny.safetensors"))
  }

  func testBadDataIsAnErrorBeforeTraining() throws {
    let tooSmall = directory + "/small.safetensors"
    try SafeTensors.write(
      [("images", SafeTensors.Entry(Tensor(zeros: [2, 1, 2, 2]))), ("labels", SafeTensors.Entry(integers: [0, 1], shape: [2]))], to: tooSmall)
    let small = try reprise("train", "--dataset", tooSmall, "--depth", "10")
    XCTAssertNotEqual(small.status, 0)
    XCTAssert(small.err.contains("smaller than densenet-bc's smallest input"), small.err)

    let data = try dataSet("labels.safetensors")
    let classes = try reprise("train", "--dataset", data, "--depth", "10", "--classes", "1")
    XCTAssertNotEqual(classes.status, 0)
    XCTAssert(classes.err.contains("label 1 is outside 0..<1"), classes.err)

    let diverging = try reprise("train", "--dataset", try dataSet("big.safetensors"), "--depth", "10", "--batch-size", "2", "--lr", "1e30")
    XCTAssertNotEqual(diverging.status, 0)
    XCTAssert(diverging.err.contains("stopping (lower --lr, or --allow-non-finite to go on)"), diverging.err)
    XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/densenet-bc-10-k12-big.safetensors"))
  }
}
