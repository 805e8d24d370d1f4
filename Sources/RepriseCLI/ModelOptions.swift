import ArgumentParser
import Foundation
import Reprise

/// The options that choose and configure a model, shared by every subcommand.
struct ModelOptions: ParsableArguments {
  @Option(
    name: .customLong("model"),
    help: "The model: \(ModelName.allCases.map(\.rawValue).joined(separator: ", ")) (default densenet-bc). A state file that records its network (pruned networks, and DenseNets and standard ResNets that train saved) needs no model options.")
  var modelName: ModelName?

  /// The model `--model` names.
  var model: ModelName { modelName ?? .densenetBC }

  @Option(help: "Depth of a CIFAR DenseNet (densenet: 4 + 3n, densenet-bc: 4 + 6n).")
  var depth = 40

  @Option(help: "Growth rate k of a CIFAR DenseNet.")
  var growthRate = 12

  @Option(help: "Granularity k of a CIFAR SeqResNet: channels per filter.")
  var granularity = 8

  @Option(help: "Widening factor r of a CIFAR SeqResNet: stage widths 16r, 32r, 48r.")
  var widening = 4

  @Option(help: "Residual blocks per stage N of a CIFAR SeqResNet.")
  var blocksPerStage = 1

  @Option(help: "The first convolution of each block of resnet20, resnet50, seresnet56, shakenet26-2x96d and mobilenetv2: \(ConvolutionVariant.allCases.map(\.rawValue).joined(separator: ", ")).")
  var conv: ConvolutionVariant = .standard

  @Option(help: "Stochastic depth of resnet20, resnet50 and seresnet56: the last block's survival probability (linear decay from 1; 1 is off).")
  var finalSurvival = 1.0

  @Option(help: "Number of classes (default: the data set's; 1000 for ImageNet models and 10 otherwise without one).")
  var classes: Int?

  @Option(help: "Transition compression θ of a CIFAR DenseNet, in (0, 1] (default 0.5 for BC, 1 otherwise).")
  var compression: Double?

  @Option(help: "Stem channels of a CIFAR DenseNet (default 2k for BC, 16 otherwise).")
  var initChannels: Int?

  @Option(help: "Dropout: after each convolution but the first (DenseNet), before the blender (CIFAR SeqResNet; default 0.1, 0 when training a single epoch).")
  var dropRate: Double?

  @Option(help: "Channel dropout on each filter's window in the windowed layers of a CIFAR SeqResNet (default: the official code's 0.1, 0 when training a single epoch).")
  var windowDropRate: Double?

  /// Bounds that keep every size the options multiply within reach of memory and of `Int`.
  static let limits = (width: 1 << 12, depth: 1000, classes: 1 << 20)

  func validate() throws {
    try check("--depth", depth, in: 1...Self.limits.depth)
    try check("--growth-rate", growthRate, in: 1...Self.limits.width)
    try check("--granularity", granularity, in: 1...Self.limits.width)
    try check("--widening", widening, in: 1...64)
    try check("--blocks-per-stage", blocksPerStage, in: 1...100)
    if let classes { try check("--classes", classes, in: 1...Self.limits.classes) }
    if let initChannels { try check("--init-channels", initChannels, in: 1...Self.limits.width) }
    if let compression, !(compression > 0 && compression <= 1) { throw ValidationError("--compression must be in (0, 1], got \(compression)") }
    if !(finalSurvival > 0 && finalSurvival <= 1) { throw ValidationError("--final-survival must be in (0, 1], got \(finalSurvival)") }
    if let dropRate, !(0..<1).contains(dropRate) { throw ValidationError("--drop-rate must be in [0, 1), got \(dropRate)") }
    if let windowDropRate, !(0..<1).contains(windowDropRate) { throw ValidationError("--window-drop-rate must be in [0, 1), got \(windowDropRate)") }
    // The configuration's own checks (depth 4 + 6n, compression leaving channels) run before any work.
    do {
      switch model.family {
      case .cifarDenseNet: _ = try denseNetConfiguration(inputChannels: 3, classCount: 10)
      case .cifarSeqResNet: _ = try seqResNetConfiguration(inputChannels: 3, classCount: 10, regularized: true)
      default: break
      }
    } catch let error as ModelError {
      throw ValidationError("\(error)")
    }
  }

  /// Checks that images of `shape` [C, H, W] are large enough for the model.
  func checkInput(_ shape: [Int], source: String) throws {
    let minimum = model.minimumInputSize
    guard shape.count == 3, shape[1] >= minimum, shape[2] >= minimum else {
      throw ValidationError("\(source): images of shape \(shape) are smaller than \(model.rawValue)'s smallest input, \(minimum)x\(minimum)")
    }
  }

  /// The model for images with `inputChannels` channels and `classCount` classes (unless --classes).
  ///
  /// - Parameter regularized: whether dropout rates not given on the command line take the
  ///   papers' defaults (otherwise 0: a single epoch of training underfits, and dropout only slows it).
  func make(inputChannels: Int, classCount: Int, regularized: Bool = true) throws -> any Network {
    let classes = self.classes ?? classCount
    switch model {
    case .densenet, .densenetBC: return DenseNet(try denseNetConfiguration(inputChannels: inputChannels, classCount: classes))
    case .seqresnet, .seqresnetB, .seqresnetB22, .seqresnetB42, .seqresnext24:
      return SeqResNet(try seqResNetConfiguration(inputChannels: inputChannels, classCount: classes, regularized: regularized))
    case .resnet20, .resnet50, .seresnet56:
      var configuration: ResNetConfiguration =
        model == .resnet20 ? .resnet20(conv) : model == .resnet50 ? .resnet50(conv) : .seresnet56(conv)
      (configuration.classCount, configuration.inputChannels) = (classes, inputChannels)
      configuration.finalSurvival = finalSurvival
      return ResNet(configuration)
    case .shakenet: return ShakeNet(convolution: conv, classCount: classes, inputChannels: inputChannels)
    case .mobilenetv2: return MobileNetV2(convolution: conv, classCount: classes, inputChannels: inputChannels)
    case .densenet121, .densenet169, .densenet201, .densenet161, .densenet264, .densenet264K48, .densenet232:
      let presets: [ModelName: DenseNetConfiguration] = [
        .densenet121: .densenet121, .densenet169: .densenet169, .densenet201: .densenet201, .densenet161: .densenet161,
        .densenet264: .densenet264, .densenet264K48: .densenet264k48, .densenet232: .densenet232,
      ]
      var configuration = presets[model]!
      (configuration.classCount, configuration.inputChannels) = (classes, inputChannels)
      configuration.dropRate = dropRate ?? 0
      return DenseNet(configuration)
    }
  }

  private func denseNetConfiguration(inputChannels: Int, classCount: Int) throws -> DenseNetConfiguration {
    try .cifar(
      depth: depth, growthRate: growthRate, bottleneck: model == .densenetBC, compression: compression,
      initialChannels: initChannels, dropRate: dropRate ?? 0, classCount: classCount, inputChannels: inputChannels)
  }

  private func seqResNetConfiguration(inputChannels: Int, classCount: Int, regularized: Bool) throws -> SeqResNetConfiguration {
    var configuration: SeqResNetConfiguration
    switch model {
    case .seqresnetB22: configuration = .b22
    case .seqresnetB42: configuration = .b42
    case .seqresnext24: configuration = .resnext24
    default:
      configuration = try .cifar(
        granularity: granularity, widening: widening, blocksPerStage: blocksPerStage, bottleneck: model == .seqresnetB,
        dropRate: dropRate ?? (regularized ? 0.1 : 0))
      configuration.windowDropRate = windowDropRate ?? (regularized ? configuration.windowDropRate : 0)
    }
    configuration.classCount = classCount
    configuration.inputChannels = inputChannels
    return configuration
  }

  /// The model for random batches of `inputSize` (C,H,W; the model's natural size when nil), built
  /// after seeding the global generator with 0, with its input shape and class count.
  ///
  /// With `state`, the network it records (``make(for:inputShape:classCount:regularized:)``) with
  /// its weights loaded.
  func makeForRandomData(inputSize: String?, state: SavedModel? = nil) throws -> (model: any Network, shape: [Int], classes: Int) {
    let architecture = state?.architecture
    let shape = try parsedInputShape(inputSize, natural: architecture?.naturalInputShape)
    RandomGenerator.global = RandomGenerator(seed: 0)
    let classes = architecture?.classCount ?? self.classes ?? model.defaultClassCount
    let network = try make(for: state, inputShape: shape, classCount: classes)
    try state?.load(into: network)
    return (network, shape, classes)
  }

  /// `--input-size C,H,W`, checked against the model's smallest input; the natural size when nil.
  ///
  /// - Parameter natural: the natural size of a network a state file records, which checks the
  ///   size itself.
  func parsedInputShape(_ inputSize: String?, natural: [Int]? = nil) throws -> [Int] {
    guard let inputSize else { return natural ?? model.naturalInputShape }
    let parts = inputSize.split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
    guard parts.count == 3, case let shape = parts.compactMap({ $0 }), shape.count == 3, (1...4096).contains(shape[0]),
      shape.dropFirst().allSatisfy({ (1...65536).contains($0) })
    else { throw ValidationError("--input-size must be C,H,W with C in 1...4096 and H, W in 1...65536, got '\(inputSize)'") }
    if natural == nil { try checkInput(shape, source: "--input-size") }
    return shape
  }

  /// Checks that one batch of `batchSize` inputs of `shape` fits in the machine's memory: a larger one
  /// would stop the program in the allocator instead of with a message.
  func checkBatch(_ batchSize: Int, _ shape: [Int], dtype: DType = .float32) throws {
    let bytes = ([batchSize] + shape).reduce(dtype.byteCount) { $0.multipliedReportingOverflow(by: $1).partialValue }
    let memory = Int(clamping: ProcessInfo.processInfo.physicalMemory)
    guard bytes > 0, bytes <= memory else {
      throw ValidationError("a batch of \(batchSize) inputs of shape \(shape) needs more than this machine's \(memory >> 20) MiB of memory")
    }
  }

  /// A short name for files and messages, such as `densenet-bc-40-k12` or `seqresnet-k8-r4-n1`.
  var label: String {
    switch model.family {
    case .cifarDenseNet: return "\(model.rawValue)-\(depth)-k\(growthRate)"
    case .cifarSeqResNet: return "\(model.rawValue)-k\(granularity)-r\(widening)-n\(blocksPerStage)"
    case .convolutionVariants: return "\(model.rawValue)-\(conv.rawValue)"
    case .imagenet: return model.rawValue
    }
  }
}

/// Throws a validation error unless `value` of `option` is in `range`.
func check(_ option: String, _ value: Int, in range: ClosedRange<Int>) throws {
  guard range.contains(value) else {
    throw ValidationError("\(option) must be in \(range.lowerBound)...\(range.upperBound), got \(value)")
  }
}

/// `--threads`, shared by every subcommand that computes.
struct ThreadOptions: ParsableArguments {
  @Option(help: "Threads for OpenBLAS and Reprise's loops, 1...256 (default: the number of cores).")
  var threads: Int?

  func validate() throws {
    if let threads { try check("--threads", threads, in: 1...256) }
  }

  /// Sets the thread count when one was given.
  func apply() {
    if let threads { Parallel.setThreadCount(threads) }
  }

  /// Sets the thread count when one was given, else shares the cores among the `processes` of a
  /// distributed run on this machine.
  func apply(sharingCoresWith processes: Int) {
    if let threads {
      Parallel.setThreadCount(threads)
    } else if processes > 1 {
      Parallel.setThreadCount(max(1, ProcessInfo.processInfo.activeProcessorCount / processes))
    }
  }
}
