import Foundation
import Reprise
import TestSupport
import XCTest

/// Every reader of files on seeded mutations of a valid file: each case must give a value or a
/// `StateFileError`, never a trap, and most must be caught by the reader's checks.
final class ReaderFuzzTests: XCTestCase {
  var directory: String!

  override func setUpWithError() throws { directory = try makeTemporaryDirectory("reprise-fuzz") }

  override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

  func model() -> Sequential {
    Sequential([("conv", Conv2d(inputChannels: 1, outputChannels: 2, kernelSize: 3)), ("norm", BatchNorm2d(channels: 2)), ("fc", Flatten())])
  }

  func saved(_ entries: [(String, SafeTensors.Entry)], metadata: [String: String] = [:]) throws -> [UInt8] {
    let path = directory + "/file.safetensors"
    try SafeTensors.write(entries, metadata: metadata, to: path)
    return [UInt8](FileManager.default.contents(atPath: path)!)
  }

  /// Compresses `bytes` with the system's gzip.
  func gzipped(_ bytes: [UInt8]) throws -> [UInt8] {
    let path = directory + "/data"
    XCTAssert(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["gzip", "-f", "-n", path]
    try process.run()
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 0)
    return [UInt8](FileManager.default.contents(atPath: path + ".gz")!)
  }

  func idx(_ shape: [Int], _ data: [UInt8]) -> [UInt8] {
    [0, 0, 8, UInt8(shape.count)] + shape.flatMap { d in (0..<4).reversed().map { UInt8(truncatingIfNeeded: d >> (8 * $0)) } } + data
  }

  func testSafeTensorsReader() throws {
    let original = try saved(model().stateEntries, metadata: ["format": "pt"])
    XCTAssertNoThrow(try SafeTensors.parse(original))
    let counts = fuzz(original, cases: 400, seed: 1) { bytes in _ = try SafeTensors.parse(bytes) }
    XCTAssertGreaterThan(counts.rejected, 250, "\(counts)")
  }

  func testModelStateLoading() throws {
    let original = try saved(model().stateEntries)
    let target = model()
    let counts = fuzz(original, cases: 400, seed: 2) { bytes in try target.load(entries: SafeTensors.parse(bytes).entries) }
    XCTAssertGreaterThan(counts.rejected, 300, "\(counts)")
  }

  func testTensorDataSetReader() throws {
    let images = SafeTensors.Entry(Tensor((0..<2 * 1 * 4 * 4).map { Float($0) / 32 }, shape: [2, 1, 4, 4]))
    let original = try saved([("images", images), ("labels", SafeTensors.Entry(integers: [3, 1], shape: [2]))])
    XCTAssertEqual(try Dataset.tensorFile(entries: SafeTensors.parse(original).entries).classCount, 4)
    let counts = fuzz(original, cases: 400, seed: 3) { bytes in _ = try Dataset.tensorFile(entries: SafeTensors.parse(bytes).entries) }
    XCTAssertGreaterThan(counts.rejected, 250, "\(counts)")
  }

  func testIDXReader() throws {
    let original = idx([3, 4, 5], (0..<60).map { UInt8($0) })
    XCTAssertEqual(try Dataset.parseIDX(original, compressed: false).shape, [3, 4, 5])
    let counts = fuzz(original, cases: 300, seed: 4) { bytes in _ = try Dataset.parseIDX(bytes, compressed: false) }
    // Most of the file is pixels, where a changed byte is still a valid file.
    XCTAssertGreaterThan(counts.rejected, 150, "\(counts)")
  }

  func testGzippedIDXReader() throws {
    let original = try gzipped(idx([3, 4, 5], (0..<60).map { UInt8($0 * 3) }))
    XCTAssertEqual(try Dataset.parseIDX(original, compressed: true).bytes.count, 60)
    let counts = fuzz(original, cases: 300, seed: 5) { bytes in _ = try Dataset.parseIDX(bytes, compressed: true) }
    XCTAssertGreaterThan(counts.rejected, 200, "\(counts)")
  }

  /// 64 MiB of zeros behind a header that declares 10 bytes: inflating stops at the declared size.
  func testGzipBombIsRefusedAtTheDeclaredSize() throws {
    let bomb = try gzipped(idx([10], []) + [UInt8](repeating: 0, count: 64 << 20))
    XCTAssertLessThan(bomb.count, 1 << 20)
    XCTAssertThrowsError(try Dataset.parseIDX(bomb, compressed: true)) { error in
      XCTAssert("\(error)".contains("expands past 18 bytes, the size its header declares"), "\(error)")
    }
    // A header that declares more than any data set is refused before inflating the rest.
    XCTAssertThrowsError(try Dataset.parseIDX(idx([1 << 20, 1 << 20, 1 << 20], []), compressed: false)) { error in
      XCTAssert("\(error)".contains("declares more than"), "\(error)")
    }
  }

  func testCIFARReader() throws {
    var record = [UInt8](repeating: 0, count: 2 * 3073)
    (record[0], record[3073]) = (3, 9)
    let original = record
    var accepted = 0, rejected = 0
    var mutations = Mutations(of: original, count: 200, seed: 6)
    while let bytes = mutations.next() {
      XCTAssert(FileManager.default.createFile(atPath: directory + "/test_batch.bin", contents: Data(bytes)))
      do {
        let data = try Dataset.cifar(directory: directory, classes: 10, split: .test)
        XCTAssert(data.labels.allSatisfy { (0..<10).contains($0) }, mutations.last)
        accepted += 1
      } catch is StateFileError { rejected += 1 }
    }
    print("fuzz seed 6: 200 cases, \(accepted) read, \(rejected) rejected with an error")
    XCTAssertGreaterThan(rejected, 60, "accepted \(accepted), rejected \(rejected)")
  }

  func testTrainingCheckpointReader() throws {
    let network = model(), optimizer = SGD(network.parameters, learningRate: 0.1, momentum: 0.9)
    _ = network(Variable(Tensor(randomNormal: [2, 1, 4, 4])))
    for p in network.parameters { p.grad = Tensor(ones: p.shape) }
    optimizer.step()
    let configuration = ["batch-size": "2", "seed": "0"]
    let path = directory + "/checkpoint.safetensors"
    try TrainingCheckpoint(step: 7, dataGenerator: RandomGenerator(seed: 3), configuration: configuration)
      .save(to: path, model: network, optimizer: optimizer)
    let original = [UInt8](FileManager.default.contents(atPath: path)!)
    func restore(_ bytes: [UInt8], configuration: [String: String] = configuration) throws -> TrainingCheckpoint {
      let (entries, metadata) = try SafeTensors.parse(bytes)
      return try TrainingCheckpoint.restore(
        entries: entries, metadata: metadata, model: model(), optimizer: SGD(model().parameters, learningRate: 0.1, momentum: 0.9),
        configuration: configuration)
    }
    XCTAssertEqual(try restore(original).step, 7)
    XCTAssertThrowsError(try restore(original, configuration: ["batch-size": "4", "seed": "0"])) { error in
      XCTAssert("\(error)".contains("another configuration: batch-size 4 (the checkpoint's: 2)"), "\(error)")
    }
    let counts = fuzz(original, cases: 400, seed: 7) { bytes in _ = try restore(bytes) }
    XCTAssertGreaterThan(counts.rejected, 300, "\(counts)")
  }

  /// Header fields that a reader trusting them would act on: each is an error naming the problem.
  func testHostileSafeTensorsHeaders() throws {
    func file(_ header: String, data: Int) -> [UInt8] {
      let json = Array(header.utf8)
      return (0..<8).map { UInt8(truncatingIfNeeded: json.count >> (8 * $0)) } + json + [UInt8](repeating: 0, count: data)
    }
    let cases: [(String, Int, String)] = [
      (#"{"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}}"#, 8, "does not fill"),
      (#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}"#, 16, "duplicate key"),
      (#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#, 12, "overlaps"),
      (#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#, 9, "cover 8 bytes of data, the file has 9"),
      (#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#, 12, "belong to no entry"),
      (#"{"a": {"dtype": "F32", "shape": [18446744073709551616], "data_offsets": [0, 8]}}"#, 8, "does not fit in 64 bits"),
      (#"{"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}"#, 8, "non-negative"),
      (#"{"a": {"dtype": "X9", "shape": [2], "data_offsets": [0, 8]}}"#, 8, "unknown dtype"),
      (#"{"__metadata__": {"n": 3}}"#, 0, "is not a string"),
      (String(repeating: "[", count: 1000), 0, "nesting deeper"),
    ]
    for (header, data, message) in cases {
      XCTAssertThrowsError(try SafeTensors.parse(file(header, data: data)), header) { error in
        XCTAssert("\(error)".contains(message), "\(header): \(error)")
      }
    }
    // A header length one byte short of the real one is an error, not a read shifted by one byte.
    var shifted = try saved([("x", SafeTensors.Entry(Tensor([1, 2, 3, 4] as [Float], shape: [4])))])
    shifted[0] -= 1
    XCTAssertThrowsError(try SafeTensors.parse(shifted))
  }

  /// A float tensor relabelled as integers, non-finite weights and an extreme counter are refused.
  func testLoadingRefusesWhatAModelCannotHold() throws {
    let network = model()
    func entries(_ change: (inout [(String, SafeTensors.Entry)]) -> Void) -> [String: SafeTensors.Entry] {
      var list = network.stateEntries
      change(&list)
      return Dictionary(uniqueKeysWithValues: list)
    }
    let relabelled = entries { list in
      let i = list.firstIndex { $0.0 == "conv.bias" }!
      list[i].1.dtype = "I32"
    }
    XCTAssertThrowsError(try network.load(entries: relabelled)) { XCTAssert("\($0)".contains("'conv.bias' is I32"), "\($0)") }
    let infinite = entries { list in
      let i = list.firstIndex { $0.0 == "norm.weight" }!
      list[i].1 = SafeTensors.Entry(Tensor([1, .infinity] as [Float], shape: [2]))
    }
    XCTAssertThrowsError(try network.load(entries: infinite)) { XCTAssert("\($0)".contains("not finite"), "\($0)") }
    let counter = entries { list in
      let i = list.firstIndex { $0.0 == "norm.num_batches_tracked" }!
      list[i].1 = SafeTensors.Entry(integers: [Int64.max], shape: [])
    }
    XCTAssertThrowsError(try network.load(entries: counter)) { XCTAssert("\($0)".contains("num_batches_tracked"), "\($0)") }
  }

  /// Labels outside the class count, or so large that they would build a huge classifier.
  func testLabelsAreCheckedAgainstTheClassCount() throws {
    let images = SafeTensors.Entry(Tensor([Float](repeating: 0, count: 2 * 4), shape: [2, 1, 2, 2]))
    func data(_ labels: [Int64], classCount: Int? = nil) throws -> Dataset {
      try Dataset.tensorFile(entries: ["images": images, "labels": SafeTensors.Entry(integers: labels, shape: [2])], classCount: classCount)
    }
    XCTAssertThrowsError(try data([0, 1 << 40])) { XCTAssert("\($0)".contains("give the class count"), "\($0)") }
    XCTAssertThrowsError(try data([Int64.max, 0])) { XCTAssert("\($0)".contains("give the class count"), "\($0)") }
    XCTAssertThrowsError(try data([0, -1])) { XCTAssert("\($0)".contains("negative"), "\($0)") }
    XCTAssertThrowsError(try data([0, 5], classCount: 5)) { XCTAssert("\($0)".contains("outside 0..<5"), "\($0)") }
    XCTAssertEqual(try data([0, 4], classCount: 5).classCount, 5)
  }
}
