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
    guard known.contains(dataset) || dataset.hasSuffix(".safetensors") else {
      throw ValidationError("unknown dataset '\(dataset)'; choose fashion-mnist, cifar10, cifar100 or a .safetensors file")
    }
    if dataset.hasPrefix("cifar") && dataDir == nil {
      throw ValidationError("--dataset \(dataset) needs --data-dir with the binary batches")
    }
  }

  /// The chosen split. A tensor file serves as both splits.
  func load(_ split: Split) throws -> Dataset {
    switch dataset {
    case "fashion-mnist": return try Dataset.fashionMNIST(directory: dataDir ?? Dataset.fashionMNISTDirectory, split: split)
    case "cifar10": return try Dataset.cifar(directory: dataDir!, classes: 10, split: split)
    case "cifar100": return try Dataset.cifar(directory: dataDir!, classes: 100, split: split)
    default: return try Dataset.tensorFile(dataset)
    }
  }

  /// A short name for files, such as `fashion-mnist`.
  var label: String { dataset.hasSuffix(".safetensors") ? URL(fileURLWithPath: dataset).deletingPathExtension().lastPathComponent : dataset }
}
