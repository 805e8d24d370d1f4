import ArgumentParser
import Reprise

/// The options that choose and configure a model, shared by every subcommand.
struct ModelOptions: ParsableArguments {
  static let names = [
    "densenet", "densenet-bc", "densenet121", "densenet169", "densenet201", "densenet161", "densenet264",
    "densenet264-k48", "densenet232", "seqresnet", "seqresnet-b", "seqresnet-b22", "seqresnet-b42", "seqresnext24",
    "resnet20", "resnet50", "seresnet56", "shakenet26-2x96d", "mobilenetv2",
  ]

  @Option(help: "The model: \(names.joined(separator: ", ")).")
  var model = "densenet-bc"

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

  @Option(help: "The first convolution of each block of resnet20, resnet50, seresnet56, shakenet26-2x96d and mobilenetv2: standard, dsconv, multiception or mixconv.")
  var conv = "standard"

  @Option(help: "Stochastic depth of resnet20, resnet50 and seresnet56: the last block's survival probability (linear decay from 1; 1 is off).")
  var finalSurvival = 1.0

  @Option(help: "Number of classes (default: the data set's).")
  var classes: Int?

  @Option(help: "Transition compression θ of a CIFAR DenseNet (default 0.5 for BC, 1 otherwise).")
  var compression: Double?

  @Option(help: "Stem channels of a CIFAR DenseNet (default 2k for BC, 16 otherwise).")
  var initChannels: Int?

  @Option(help: "Dropout: after each convolution but the first (DenseNet), before the blender (CIFAR SeqResNet; default 0.1, 0 when training a single epoch).")
  var dropRate: Double?

  @Option(help: "Channel dropout on each filter's window in the windowed layers of a CIFAR SeqResNet (default: the official code's 0.1, 0 when training a single epoch).")
  var windowDropRate: Double?

  func validate() throws {
    guard Self.names.contains(model) else {
      throw ValidationError("unknown model '\(model)'; choose one of \(Self.names.joined(separator: ", "))")
    }
    if let classes, classes < 1 { throw ValidationError("--classes must be positive, got \(classes)") }
    if ConvolutionVariant(rawValue: conv) == nil {
      throw ValidationError("unknown convolution '\(conv)'; choose one of \(ConvolutionVariant.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    if !(finalSurvival > 0 && finalSurvival <= 1) { throw ValidationError("--final-survival must be in (0, 1], got \(finalSurvival)") }
    if let dropRate, !(0..<1).contains(dropRate) { throw ValidationError("--drop-rate must be in [0, 1), got \(dropRate)") }
    if let windowDropRate, !(0..<1).contains(windowDropRate) { throw ValidationError("--window-drop-rate must be in [0, 1), got \(windowDropRate)") }
  }

  /// The model for images with `inputChannels` channels and `classCount` classes (unless --classes).
  ///
  /// - Parameter regularized: whether dropout rates not given on the command line take the
  ///   papers' defaults (otherwise 0: a single epoch of training underfits, and dropout only slows it).
  func make(inputChannels: Int, classCount: Int, regularized: Bool = true) throws -> any Network {
    let classes = self.classes ?? classCount
    if model.hasPrefix("seq") {
      return try makeSeqResNet(inputChannels: inputChannels, classCount: classes, regularized: regularized)
    }
    let variant = ConvolutionVariant(rawValue: conv) ?? .standard
    switch model {
    case "resnet20", "resnet50", "seresnet56":
      var configuration: ResNetConfiguration =
        model == "resnet20" ? .resnet20(variant) : model == "resnet50" ? .resnet50(variant) : .seresnet56(variant)
      (configuration.classCount, configuration.inputChannels) = (classes, inputChannels)
      configuration.finalSurvival = finalSurvival
      return ResNet(configuration)
    case "shakenet26-2x96d":
      return ShakeNet(convolution: variant, classCount: classes, inputChannels: inputChannels)
    case "mobilenetv2":
      return MobileNetV2(convolution: variant, classCount: classes, inputChannels: inputChannels)
    default: break
    }
    var configuration: DenseNetConfiguration
    switch model {
    case "densenet", "densenet-bc":
      configuration = try .cifar(
        depth: depth, growthRate: growthRate, bottleneck: model == "densenet-bc", compression: compression,
        initialChannels: initChannels, dropRate: dropRate ?? 0, classCount: classes, inputChannels: inputChannels)
    case "densenet121": configuration = .densenet121
    case "densenet169": configuration = .densenet169
    case "densenet201": configuration = .densenet201
    case "densenet161": configuration = .densenet161
    case "densenet264": configuration = .densenet264
    case "densenet264-k48": configuration = .densenet264k48
    default: configuration = .densenet232
    }
    configuration.classCount = classes
    configuration.inputChannels = inputChannels
    if configuration.stem == .imagenet { configuration.dropRate = dropRate ?? 0 }
    return DenseNet(configuration)
  }

  private func makeSeqResNet(inputChannels: Int, classCount: Int, regularized: Bool) throws -> SeqResNet {
    var configuration: SeqResNetConfiguration
    switch model {
    case "seqresnet", "seqresnet-b":
      configuration = try .cifar(
        granularity: granularity, widening: widening, blocksPerStage: blocksPerStage, bottleneck: model == "seqresnet-b",
        dropRate: dropRate ?? (regularized ? 0.1 : 0))
      configuration.windowDropRate = windowDropRate ?? (regularized ? configuration.windowDropRate : 0)
    case "seqresnet-b22": configuration = .b22
    case "seqresnet-b42": configuration = .b42
    default: configuration = .resnext24
    }
    configuration.classCount = classCount
    configuration.inputChannels = inputChannels
    return SeqResNet(configuration)
  }

  /// The model for random batches of `inputSize` (C,H,W; the model's natural size when nil), built
  /// after seeding the global generator with 0, with its input shape and class count.
  func makeForRandomData(inputSize: String?) throws -> (model: any Network, shape: [Int], classes: Int) {
    let shape = try parsedInputShape(inputSize, self)
    RandomGenerator.global = RandomGenerator(seed: 0)
    let classes = self.classes ?? defaultClassCount
    return (try make(inputChannels: shape[0], classCount: classes), shape, classes)
  }

  /// Classes when neither --classes nor a data set says: 1000 for ImageNet models, 10 otherwise.
  var defaultClassCount: Int { naturalInputShape[1] == 224 ? 1000 : 10 }

  /// The models of CIFAR size (the others are ImageNet models).
  static let cifarModels: Set = [
    "densenet", "densenet-bc", "seqresnet", "seqresnet-b", "resnet20", "resnet50", "seresnet56", "shakenet26-2x96d", "mobilenetv2",
  ]

  /// The input size the model family is made for: [3, 32, 32] for CIFAR models, [3, 224, 224] for ImageNet ones.
  var naturalInputShape: [Int] { Self.cifarModels.contains(model) ? [3, 32, 32] : [3, 224, 224] }

  /// A short name for files and messages, such as `densenet-bc-40-k12` or `seqresnet-k8-r4-n1`.
  var label: String {
    switch model {
    case "densenet", "densenet-bc": return "\(model)-\(depth)-k\(growthRate)"
    case "seqresnet", "seqresnet-b": return "\(model)-k\(granularity)-r\(widening)-n\(blocksPerStage)"
    case "resnet20", "resnet50", "seresnet56", "shakenet26-2x96d", "mobilenetv2": return "\(model)-\(conv)"
    default: return model
    }
  }
}
