import ArgumentParser
import Reprise

/// A model state file read once: its entries, and the architecture it records (a pruned network's,
/// or that of any DenseNet or standard ResNet that `train` or `prune` saved).
struct SavedModel {
  let path: String
  let entries: [String: SafeTensors.Entry]
  let architecture: Architecture?

  /// Reads `path`.
  ///
  /// - Throws: ``StateFileError`` when it is not a valid state file, or records an architecture
  ///   that is not valid or needs more parameters than the file holds values (so a hostile record
  ///   cannot make the tool build a network of any size).
  init(_ path: String) throws {
    let (entries, metadata) = try SafeTensors.read(path)
    let architecture = try Architecture(metadata: metadata, path: path)
    if let architecture {
      let values = entries.values.reduce(0) { $0 + $1.shape.reduce(1, *) }
      guard architecture.parameterCount <= values else {
        throw StateFileError.corrupt(path, "its architecture has \(architecture.parameterCount) parameters, but the file holds \(values) values")
      }
    }
    (self.path, self.entries, self.architecture) = (path, entries, architecture)
  }

  /// Loads the entries into `model`, which must have their names and shapes.
  func load(into model: any Module) throws { try model.load(entries: entries, path: path) }
}

extension ModelOptions {
  /// The network the state file at `path` holds, with its weights
  /// (``make(for:inputShape:classCount:regularized:)``, then loaded).
  func load(_ path: String, inputShape: [Int]?, classCount: Int?) throws -> any Network {
    let state = try SavedModel(path)
    let model = try make(for: state, inputShape: inputShape, classCount: classCount)
    try state.load(into: model)
    return model
  }
}

extension Architecture {
  /// The `--model` values that name this kind of network.
  var modelNames: [ModelName] {
    switch self {
    case .denseNet(let c) where c.stem == .cifar: return [c.bottleneck ? .densenetBC : .densenet]
    case .denseNet: return ModelName.allCases.filter { $0.family == .imagenet && $0.rawValue.hasPrefix("densenet") }
    case .resNet: return [.resnet20, .resnet50, .seresnet56]
    }
  }

  /// A short name for files and messages, such as `densenet-40-k12-pruned`: the options' label
  /// (``ModelOptions/label``) of an unpruned network.
  var label: String {
    switch self {
    case .denseNet(let c):
      let base =
        c.stem == .cifar
        ? "\(c.bottleneck ? "densenet-bc" : "densenet")-\(4 + c.blocks.reduce(0, +) * (c.bottleneck ? 2 : 1))-k\(c.growthRate)"
        : "densenet-\(c.blocks.map(String.init).joined(separator: "-"))-k\(c.growthRate)"
      return base + (c.pruning == nil ? "" : "-pruned")
    case .resNet(let c):
      return "\(c.squeezeReduction == nil ? "" : "se")resnet\(6 * c.blocksPerStage + 2)-standard" + (c.innerWidths == nil ? "" : "-pruned")
    }
  }

  /// The smallest height and width of an input.
  var minimumInputSize: Int { modelNames[0].minimumInputSize }

  /// Channels, height and width of the input the network is made for.
  var naturalInputShape: [Int] {
    let inputChannels: Int
    switch self {
    case .denseNet(let c): inputChannels = c.inputChannels
    case .resNet(let c): inputChannels = c.inputChannels
    }
    return [inputChannels] + modelNames[0].naturalInputShape.dropFirst()
  }

  /// The number of classes.
  var classCount: Int {
    switch self {
    case .denseNet(let c): return c.classCount
    case .resNet(let c): return c.classCount
    }
  }
}

extension ModelOptions {
  /// The label of the network `state` records, or of the options' model.
  func networkLabel(for state: SavedModel?) -> String { state?.architecture?.label ?? label }

  /// The name of the kind of network `state` records, or `--model`.
  func name(for state: SavedModel?) -> ModelName { state?.architecture?.modelNames[0] ?? model }

  /// The network `state` records, checked against `--model` and `--classes` when given and
  /// against the data, or the options' network when the file records none.
  ///
  /// - Parameters:
  ///   - inputShape: the data's image shape [C, H, W], when there are data.
  ///   - classCount: the data's class count, when there are data.
  func make(for state: SavedModel?, inputShape: [Int]?, classCount: Int?, regularized: Bool = true) throws -> any Network {
    guard let state, let architecture = state.architecture else {
      if let inputShape { try checkInput(inputShape, source: "the data") }
      return try make(inputChannels: inputShape?[0] ?? model.naturalInputShape[0], classCount: classCount ?? model.defaultClassCount, regularized: regularized)
    }
    if let given = modelName, !architecture.modelNames.contains(given) {
      throw ValidationError("--model \(given.rawValue) names another network than \(state.path)'s, a \(architecture.label); drop --model")
    }
    if let classes, classes != architecture.classCount {
      throw ValidationError("--classes \(classes) differs from the \(architecture.classCount) classes of \(state.path)'s network")
    }
    if let inputShape {
      guard inputShape.count == 3, inputShape[0] == architecture.naturalInputShape[0] else {
        throw RunError("\(state.path)'s network takes images of \(architecture.naturalInputShape[0]) channels, not \(inputShape)")
      }
      guard inputShape[1] >= architecture.minimumInputSize, inputShape[2] >= architecture.minimumInputSize else {
        throw RunError("images of shape \(inputShape) are smaller than \(architecture.label)'s smallest input, \(architecture.minimumInputSize)x\(architecture.minimumInputSize)")
      }
    }
    if let classCount, classCount > architecture.classCount {
      throw RunError("the data have \(classCount) classes, \(state.path)'s network \(architecture.classCount)")
    }
    return try architecture.makeNetwork()
  }
}
