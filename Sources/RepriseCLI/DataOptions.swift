import ArgumentParser
import Foundation
import Reprise

/// The options that choose a data set.
struct DataOptions: ParsableArguments {
  @Option(help: "fashion-mnist, cifar10, cifar100, or a .safetensors file of `images` [N, C, H, W] and `labels` [N].")
  var dataset = "fashion-mnist"

  @Option(help: "Directory of the data set's files (default for fashion-mnist: \(Dataset.fashionMNISTDirectory)).")
  var dataDir: String?

  func validate() throws {
    let known = ["fashion-mnist", "cifar10", "cifar100"]
    guard known.contains(dataset) || isTensorFile else {
      throw ValidationError("unknown dataset '\(dataset)'; choose fashion-mnist, cifar10, cifar100 or a .safetensors file")
    }
    if dataset.hasPrefix("cifar") && dataDir == nil {
      throw ValidationError("--dataset \(dataset) needs --data-dir with the binary batches")
    }
    if !known.contains(dataset) { try readable("--dataset", dataset) }
  }

  /// The chosen split, with labels checked against `classes` when given (a tensor file's class count
  /// is then `classes`, else one more than its largest label). A tensor file serves as both splits.
  ///
  /// - Throws: ``StateFileError`` for a file that is missing or corrupt, or a split without images.
  func load(_ split: Split, classes: Int? = nil) throws -> Dataset {
    let data: Dataset
    switch dataset {
    case "fashion-mnist": data = try Dataset.fashionMNIST(directory: dataDir ?? Dataset.fashionMNISTDirectory, split: split)
    case "cifar10": data = try Dataset.cifar(directory: dataDir!, classes: 10, split: split)
    case "cifar100": data = try Dataset.cifar(directory: dataDir!, classes: 100, split: split)
    default: data = try Dataset.tensorFile(dataset, classCount: classes)
    }
    guard data.count > 0 else { throw StateFileError.corrupt(dataset, "the \(split.rawValue) split has no images") }
    if let classes, classes < data.classCount, let bad = data.labels.first(where: { $0 >= classes }) {
      throw StateFileError.corrupt(dataset, "label \(bad) is outside 0..<\(classes) (--classes \(classes))")
    }
    return data
  }

  /// The training and test splits; a tensor file, which serves as both, is read once.
  func loadSplits(classes: Int? = nil) throws -> (train: Dataset, test: Dataset) {
    let train = try load(.train, classes: classes)
    return (train, isTensorFile ? train : try load(.test, classes: classes))
  }

  /// Whether the data set is a safetensors file rather than a named one.
  var isTensorFile: Bool { dataset.hasSuffix(".safetensors") }

  /// A short name for files, such as `fashion-mnist`.
  var label: String { isTensorFile ? URL(fileURLWithPath: dataset).deletingPathExtension().lastPathComponent : dataset }
}
