import Foundation
import TensorModule

/// Which part of a data set.
public enum Split: String, Sendable {
  /// The training images.
  case train
  /// The test images.
  case test
}

extension Dataset {
  /// Where the Debian package dataset-fashion-mnist installs Fashion-MNIST.
  public static let fashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"

  /// Fashion-MNIST (Xiao et al. 2017) from its IDX files (gzip-compressed or not) in `directory`:
  /// 28x28 grey images, 10 classes, normalised with mean 0.2860 and deviation 0.3530.
  ///
  /// - Throws: ``StateFileError`` when a file is missing, truncated or corrupt.
  public static func fashionMNIST(directory: String = fashionMNISTDirectory, split: Split) throws -> Dataset {
    let prefix = split == .train ? "train" : "t10k"
    let images = try readIDX(directory + "/\(prefix)-images-idx3-ubyte")
    let labels = try readIDX(directory + "/\(prefix)-labels-idx1-ubyte")
    guard images.shape.count == 3, labels.shape.count == 1, images.shape[0] == labels.shape[0] else {
      throw StateFileError.corrupt(directory, "image shape \(images.shape) does not match label shape \(labels.shape)")
    }
    return try Dataset(
      pixels: .bytes(images.bytes), imageShape: [1, images.shape[1], images.shape[2]], labels: labels.bytes.map(Int.init),
      classCount: 10, mean: [0.2860], standardDeviation: [0.3530], source: directory)
  }

  /// CIFAR-10 or CIFAR-100 from the binary batches in `directory` (data_batch_1..5.bin and
  /// test_batch.bin, or train.bin and test.bin with coarse and fine labels; the fine label is used).
  ///
  /// - Throws: ``StateFileError`` when a file is missing or its size is not a whole number of records.
  public static func cifar(directory: String, classes: Int, split: Split) throws -> Dataset {
    require(classes == 10 || classes == 100, "cifar: classes must be 10 or 100, got \(classes)")
    let files = classes == 10
      ? (split == .train ? (1...5).map { "data_batch_\($0).bin" } : ["test_batch.bin"])
      : [split == .train ? "train.bin" : "test.bin"]
    let labelBytes = classes == 10 ? 1 : 2, record = labelBytes + 3072
    var pixels: [UInt8] = [], labels: [Int] = []
    for file in files {
      let path = directory + "/" + file
      guard let data = FileManager.default.contents(atPath: path) else { throw StateFileError.unreadable(path) }
      let bytes = [UInt8](data)
      guard !bytes.isEmpty, bytes.count % record == 0 else {
        throw StateFileError.corrupt(path, "\(bytes.count) bytes is not a whole number of \(record)-byte records")
      }
      for start in stride(from: 0, to: bytes.count, by: record) {
        labels.append(Int(bytes[start + labelBytes - 1]))
        pixels += bytes[start + labelBytes..<start + record]
      }
    }
    let (mean, deviation) = classes == 10
      ? ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]) : ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762])
    return try Dataset(
      pixels: .bytes(pixels), imageShape: [3, 32, 32], labels: labels, classCount: classes, mean: mean,
      standardDeviation: deviation, source: directory)
  }

  /// Images and labels from a safetensors file: `images` [N, C, H, W] (float32 used as given, or
  /// uint8 scaled to [0, 1]) and `labels` [N] (int64 or int32). No normalisation unless set after.
  ///
  /// - Parameters:
  ///   - path: the file.
  ///   - classCount: the number of classes; one more than the largest label when `nil` (at most
  ///     ``maximumInferredClassCount``).
  /// - Throws: ``StateFileError`` when the file is unreadable or lacks the right entries, or a label
  ///   is negative or not below the class count.
  public static func tensorFile(_ path: String, classCount: Int? = nil) throws -> Dataset {
    try tensorFile(entries: SafeTensors.read(path).entries, classCount: classCount, path: path)
  }

  /// The most classes inferred from labels: a larger label is far more likely a corrupt file than
  /// a data set, and would build a classifier of that many outputs.
  public static let maximumInferredClassCount = 100_000

  /// A data set from safetensors entries `images` and `labels`, as ``tensorFile(_:classCount:)``
  /// reads them; `path` names them in errors.
  public static func tensorFile(entries: [String: SafeTensors.Entry], classCount: Int? = nil, path: String = "data") throws -> Dataset {
    guard let images = entries["images"], let labelEntry = entries["labels"] else {
      throw StateFileError.corrupt(path, "expected entries 'images' and 'labels', found \(entries.keys.sorted())")
    }
    guard images.shape.count == 4, labelEntry.shape == [images.shape[0]] else {
      throw StateFileError.corrupt(path, "images \(images.shape) and labels \(labelEntry.shape) are not [N, C, H, W] and [N]")
    }
    guard labelEntry.dtype == "I64" || labelEntry.dtype == "I32" else {
      throw StateFileError.corrupt(path, "labels must be int64 or int32, found \(labelEntry.dtype)")
    }
    let labels = try labelEntry.integers(path: path)
    guard !labels.isEmpty else { throw StateFileError.corrupt(path, "the file holds no images") }
    if let bad = labels.first(where: { $0 < 0 }) { throw StateFileError.corrupt(path, "label \(bad) is negative") }
    let largest = labels.max() ?? -1
    if classCount == nil, largest >= maximumInferredClassCount {
      throw StateFileError.corrupt(
        path, "label \(largest) would make more than the \(maximumInferredClassCount) classes inferred at most; give the class count")
    }
    let pixels: Pixels
    switch images.dtype {
    case "U8": pixels = .bytes(images.bytes)
    case "F32":
      let floats = images.elements(Float.self)
      if let bad = floats.firstIndex(where: { !$0.isFinite }) {
        throw StateFileError.corrupt(path, "image value \(bad) is \(floats[bad]); images must be finite")
      }
      pixels = .floats(floats)
    default: throw StateFileError.corrupt(path, "images must be float32 or uint8, found \(images.dtype)")
    }
    return try Dataset(
      pixels: pixels, imageShape: Array(images.shape.dropFirst()), labels: labels,
      classCount: classCount ?? (largest + 1), source: path)
  }

  /// The most data one IDX file may declare (Fashion-MNIST's largest holds 47 MB).
  static let maximumIDXBytes = 1 << 32

  /// An IDX file (LeCun's MNIST format) of unsigned bytes, read from `path` or `path.gz`.
  static func readIDX(_ path: String) throws -> (shape: [Int], bytes: [UInt8]) {
    let (file, compressed) = FileManager.default.fileExists(atPath: path + ".gz") ? (path + ".gz", true) : (path, false)
    guard let data = FileManager.default.contents(atPath: file) else { throw StateFileError.unreadable(path + "(.gz)") }
    return try parseIDX([UInt8](data), compressed: compressed, path: file)
  }

  /// The shape and data of IDX `bytes` (gzip-compressed when `compressed`); `path` names them in
  /// errors. A compressed file is inflated only up to the size its header declares.
  ///
  /// - Throws: ``StateFileError/corrupt(_:_:)`` saying what is wrong.
  public static func parseIDX(_ file: [UInt8], compressed: Bool, path: String = "data") throws -> (shape: [Int], bytes: [UInt8]) {
    let bytes = compressed
      ? try gunzip(file, path: path, limit: maximumIDXBytes) { try idxHeader($0, path: path).map { $0.start + $0.count } }
      : file
    guard let (shape, start, count) = try idxHeader(bytes, path: path) else { throw StateFileError.corrupt(path, "the IDX header is truncated") }
    guard bytes.count - start == count else {
      throw StateFileError.corrupt(path, "shape \(shape) needs \(count) bytes of data, the file has \(bytes.count - start)")
    }
    return (shape, Array(bytes[start...]))
  }

  /// The shape, data offset and data size an IDX header declares, nil while `prefix` is too short to tell.
  static func idxHeader(_ prefix: [UInt8], path: String) throws -> (shape: [Int], start: Int, count: Int)? {
    guard prefix.count >= 4 else { return nil }
    guard prefix[0] == 0, prefix[1] == 0, prefix[2] == 0x08 else { throw StateFileError.corrupt(path, "not an IDX file of unsigned bytes") }
    let rank = Int(prefix[3]), start = 4 + 4 * rank
    guard rank >= 1 else { throw StateFileError.corrupt(path, "an IDX file of rank 0") }
    guard prefix.count >= start else { return nil }
    let shape = (0..<rank).map { d in prefix[4 + 4 * d..<8 + 4 * d].reduce(0) { $0 << 8 | Int($1) } }
    guard let count = SafeTensors.checkedProduct(shape), count <= maximumIDXBytes else {
      throw StateFileError.corrupt(path, "shape \(shape) declares more than \(maximumIDXBytes) bytes")
    }
    return (shape, start, count)
  }
}
