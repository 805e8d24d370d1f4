import Foundation
import Reprise
import TestSupport
import XCTest

final class StateFileTests: XCTestCase {
  var directory: String!

  override func setUpWithError() throws { directory = try makeTemporaryDirectory("reprise-state") }

  override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

  func model() -> Sequential {
    Sequential([("conv", Conv2d(inputChannels: 1, outputChannels: 2, kernelSize: 3)), ("norm", BatchNorm2d(channels: 2)), ("fc", Flatten())])
  }

  func testRoundTripRestoresParametersBuffersAndCounters() throws {
    let a = model(), b = model()
    _ = a(Variable(Tensor(randomNormal: [2, 1, 4, 4])))  // moves the running statistics
    let path = directory + "/state.safetensors"
    try a.saveState(to: path)
    try b.loadState(from: path)
    for ((name, x), (_, y)) in zip(a.namedParameters + a.namedBuffers, b.namedParameters + b.namedBuffers) {
      assertBitIdentical(x.value, y.value, name)
    }
    XCTAssertEqual((b.layers[1].layer as! BatchNorm2d).batchesTracked, 1)
    let keys = try SafeTensors.read(path).entries.keys.sorted()
    XCTAssertEqual(keys, ["conv.bias", "conv.weight", "norm.bias", "norm.num_batches_tracked", "norm.running_mean", "norm.running_var", "norm.weight"])
    // No temporary file is left behind.
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), ["state.safetensors"])
  }

  func testKeyProblemsAreReportedTogetherAndNothingChanges() throws {
    let a = model()
    let path = directory + "/bad.safetensors"
    var entries = a.stateEntries.filter { $0.0 != "conv.bias" }
    entries = entries.map { $0.0 == "norm.weight" ? ($0.0, SafeTensors.Entry(Tensor(ones: [3]))) : $0 }
    entries.append(("extra.weight", SafeTensors.Entry(Tensor(ones: [1]))))
    try SafeTensors.write(entries, to: path)
    let before = a.namedParameters.map(\.variable.value)
    XCTAssertThrowsError(try a.loadState(from: path)) { error in
      XCTAssertEqual(
        "\(error)",
        "missing keys: conv.bias; unexpected keys: extra.weight; mis-shaped keys: norm.weight (expected [2], found [3])")
    }
    for (x, y) in zip(before, a.namedParameters.map(\.variable.value)) { assertBitIdentical(x, y) }
  }

  func testCorruptFilesAreErrorsNotCrashes() throws {
    let good = directory + "/good.safetensors"
    try model().saveState(to: good)
    let bytes = [UInt8](FileManager.default.contents(atPath: good)!)
    let cases: [(String, [UInt8], String)] = [
      ("empty", [], "too short"),
      ("truncated header", Array(bytes.prefix(20)), "exceeds the 12 bytes after the length field"),
      ("truncated data", Array(bytes.dropLast(8)), "bytes of data"),
      ("garbage header", [16, 0, 0, 0, 0, 0, 0, 0] + Array("not json at all!".utf8), "not valid JSON"),
    ]
    for (name, content, message) in cases {
      let path = directory + "/\(name).safetensors"
      XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(content)), "\(name): wrote the file")
      XCTAssertThrowsError(try model().loadState(from: path), name) { error in
        XCTAssertTrue("\(error)".contains(message), "\(name): \(error)")
      }
    }
    XCTAssertThrowsError(try model().loadState(from: directory + "/missing.safetensors")) { error in
      XCTAssertEqual("\(error)", "cannot read \(directory!)/missing.safetensors")
    }
  }

  /// A file laid out as PyTorch's safetensors writer does (header with `__metadata__`, F32 data and
  /// an I64 `num_batches_tracked`) loads.
  func testPyTorchStyleFileLoads() throws {
    let a = model()
    let path = directory + "/torch.safetensors"
    var entries = a.stateEntries
    entries = entries.map { $0.0 == "norm.num_batches_tracked" ? ($0.0, SafeTensors.Entry(integers: [7], shape: [])) : $0 }
    try SafeTensors.write(entries, metadata: ["format": "pt"], to: path)
    let b = model()
    try b.loadState(from: path)
    XCTAssertEqual((b.layers[1].layer as! BatchNorm2d).batchesTracked, 7)
  }
}

/// What a save does to the file system around its target.
final class AtomicSaveTests: XCTestCase {
  var directory: String!

  override func setUpWithError() throws { directory = try makeTemporaryDirectory("reprise-save") }

  override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

  let entries = [("x", SafeTensors.Entry(Tensor([1, 2] as [Float], shape: [2])))]

  func testASymbolicLinkIsWrittenThrough() throws {
    let target = directory + "/real.safetensors", link = directory + "/link.safetensors"
    try SafeTensors.write(entries, to: target)
    try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "real.safetensors")
    try SafeTensors.write([("y", SafeTensors.Entry(Tensor([3] as [Float], shape: [1])))], to: link)
    XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link), "real.safetensors")
    XCTAssertEqual(try SafeTensors.read(target).entries.keys.sorted(), ["y"])
  }

  func testAnExistingFileKeepsItsPermissions() throws {
    let path = directory + "/private.safetensors"
    try SafeTensors.write(entries, to: path)
    try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
    try SafeTensors.write(entries, to: path)
    let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
    XCTAssertEqual(mode, 0o600)
  }

  func testTemporariesOfInterruptedSavesAreRemovedByTheNextSave() throws {
    let path = directory + "/model.safetensors"
    // A process id that no process has: the largest pid Linux hands out is below 2^22.
    let abandoned = directory + "/.model.safetensors.tmp-\(Int32.max - 1)"
    let foreign = directory + "/.other.safetensors.tmp-\(Int32.max - 1)"
    for file in [abandoned, foreign] { XCTAssert(FileManager.default.createFile(atPath: file, contents: Data(count: 64))) }
    try SafeTensors.write(entries, to: path)
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory).sorted(), [".other.safetensors.tmp-\(Int32.max - 1)", "model.safetensors"])
  }

  func testAnUnwritableDirectoryIsAnErrorAndLeavesTheTargetIntact() throws {
    let path = directory + "/kept.safetensors"
    try SafeTensors.write(entries, to: path)
    XCTAssertThrowsError(try SafeTensors.write(entries, to: directory + "/missing/dir/file.safetensors")) { error in
      XCTAssert("\(error)".hasPrefix("cannot write"), "\(error)")
    }
    XCTAssertEqual(try SafeTensors.read(path).entries.keys.sorted(), ["x"])
  }
}
