import Foundation
import Reprise
import TestSupport
import XCTest

/// The data loaders on small generated files, including corrupt ones.
final class DatasetTests: XCTestCase {
  var directory: String!

  override func setUpWithError() throws { directory = try makeTemporaryDirectory("reprise-data") }

  override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

  func idx(_ shape: [Int], _ data: [UInt8]) -> [UInt8] {
    [0, 0, 8, UInt8(shape.count)] + shape.flatMap { d in (0..<4).reversed().map { UInt8(truncatingIfNeeded: d >> (8 * $0)) } } + data
  }

  func write(_ name: String, _ bytes: [UInt8], gzip: Bool) throws {
    let path = directory + "/" + name
    XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)), "could not write \(path)")
    guard gzip else { return }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["gzip", "-f", path]
    try process.run()
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 0)
  }

  func testFashionMNISTFromGzippedIDX() throws {
    let pixels = (0..<3 * 4 * 5).map { UInt8($0 * 4) }
    try write("t10k-images-idx3-ubyte", idx([3, 4, 5], pixels), gzip: true)
    try write("t10k-labels-idx1-ubyte", idx([3], [7, 0, 9]), gzip: true)
    let data = try Dataset.fashionMNIST(directory: directory, split: .test)
    XCTAssertEqual(data.count, 3)
    XCTAssertEqual(data.imageShape, [1, 4, 5])
    XCTAssertEqual(data.labels, [7, 0, 9])
    var g = RandomGenerator(seed: 0)
    let (images, labels) = data.batch([2, 0], using: &g)
    XCTAssertEqual(images.shape, [2, 1, 4, 5])
    XCTAssertEqual(labels, [9, 7])
    XCTAssertEqual(images[1, 0, 0, 1], (4.0 / 255 - 0.2860) / 0.3530, accuracy: 1e-6)
    XCTAssertEqual(images[0, 0, 0, 0], (160.0 / 255 - 0.2860) / 0.3530, accuracy: 1e-6)
  }

  func testCorruptIDXFilesAreErrors() throws {
    try write("train-labels-idx1-ubyte", idx([3], [1, 2, 3]), gzip: false)
    // More images promised than present.
    try write("train-images-idx3-ubyte", idx([4, 2, 2], [UInt8](repeating: 1, count: 12)), gzip: false)
    XCTAssertThrowsError(try Dataset.fashionMNIST(directory: directory, split: .train)) { error in
      XCTAssertTrue("\(error)".contains("needs 16 bytes of data, the file has 12"), "\(error)")
    }
    // A gzip stream cut in the middle.
    try write("train-images-idx3-ubyte", idx([3, 2, 2], [UInt8](repeating: 1, count: 12)), gzip: true)
    let path = directory + "/train-images-idx3-ubyte.gz"
    let full = FileManager.default.contents(atPath: path)!
    XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: full.prefix(full.count / 2)), "could not write \(path)")
    XCTAssertThrowsError(try Dataset.fashionMNIST(directory: directory, split: .train)) { error in
      XCTAssertTrue("\(error)".contains("gzip"), "\(error)")
    }
    XCTAssertThrowsError(try Dataset.fashionMNIST(directory: directory + "/nowhere", split: .train)) { error in
      XCTAssertTrue("\(error)".hasPrefix("cannot read"), "\(error)")
    }
  }

  func testCIFARBinaryBatches() throws {
    var record = [UInt8](repeating: 0, count: 3073)
    record[0] = 3
    record[1] = 255
    try write("test_batch.bin", record + record.map { $0 == 3 ? 5 : $0 }, gzip: false)
    let data = try Dataset.cifar(directory: directory, classes: 10, split: .test)
    XCTAssertEqual(data.labels, [3, 5])
    XCTAssertEqual(data.imageShape, [3, 32, 32])
    try write("test.bin", Array(record.prefix(3000)), gzip: false)
    XCTAssertThrowsError(try Dataset.cifar(directory: directory, classes: 100, split: .test)) { error in
      XCTAssertTrue("\(error)".contains("not a whole number of 3074-byte records"), "\(error)")
    }
  }

  func testTensorFile() throws {
    let path = directory + "/data.safetensors"
    try SafeTensors.write(
      [("images", SafeTensors.Entry(Tensor(ones: [2, 3, 2, 2]))), ("labels", SafeTensors.Entry(integers: [1, 4], shape: [2]))], to: path)
    let data = try Dataset.tensorFile(path)
    XCTAssertEqual(data.classCount, 5)
    var g = RandomGenerator(seed: 0)
    XCTAssertEqual(data.batch([1], using: &g).images.scalars(as: Float.self), Array(repeating: 1, count: 12), "float images are used as given")
    try SafeTensors.write([("images", SafeTensors.Entry(Tensor(ones: [2, 3, 2, 2])))], to: path)
    XCTAssertThrowsError(try Dataset.tensorFile(path)) { error in
      XCTAssertTrue("\(error)".contains("expected entries 'images' and 'labels'"), "\(error)")
    }
  }

  func testShufflingIsSeededAndAugmentationStaysInBounds() throws {
    let data = try Dataset(pixels: .bytes((0..<64).map(UInt8.init)), imageShape: [1, 2, 2], labels: Array(repeating: 0, count: 16), classCount: 1)
    XCTAssertEqual(data.order(epoch: 1, seed: 3, shuffle: true), data.order(epoch: 1, seed: 3, shuffle: true))
    XCTAssertNotEqual(data.order(epoch: 1, seed: 3, shuffle: true), data.order(epoch: 2, seed: 3, shuffle: true))
    XCTAssertEqual(data.order(epoch: 1, seed: 3, shuffle: true).sorted(), Array(0..<16))
    XCTAssertEqual(data.order(epoch: 0, seed: 3, shuffle: false), Array(0..<16))
    var g = RandomGenerator(seed: 1)
    let flipOnly = data.batch([0], augmentation: Augmentation(cropPadding: 0, horizontalFlip: true), using: &g).images.scalars(as: Float.self)
    XCTAssertTrue([[0, 1, 2, 3], [1, 0, 3, 2]].map { $0.map { Float($0) * (1 / Float(255)) } }.contains(flipOnly), "\(flipOnly)")
  }
}
