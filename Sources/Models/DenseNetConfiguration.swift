import NN

/// The hyperparameters of a DenseNet (docs/models.md).
public struct DenseNetConfiguration: Sendable, Equatable, Codable {
  /// The stem: a 3x3 convolution for 32x32 inputs, or 7x7/2 with max pooling for 224x224.
  public enum Stem: String, Sendable, Equatable, Codable {
    /// conv 3x3, no BN or ReLU after it.
    case cifar
    /// conv 7x7 stride 2, BN, ReLU, max-pool 3x3 stride 2.
    case imagenet
  }

  /// Channels each dense layer adds (k).
  public var growthRate: Int
  /// Layers per dense block.
  public var blocks: [Int]
  /// Whether dense layers have the 1x1 bottleneck (DenseNet-B).
  public var bottleneck: Bool
  /// The bottleneck width in multiples of k.
  public var bottleneckFactor = 4
  /// The fraction of channels a transition keeps (θ; 1 for plain DenseNet).
  public var compression: Double
  /// Output channels of the stem (c0).
  public var initialChannels: Int
  /// Dropout probability after each convolution but the first.
  public var dropRate: Double
  /// Classes of the classifier.
  public var classCount: Int
  /// Channels of the input images.
  public var inputChannels: Int
  /// The stem.
  public var stem: Stem
  /// The channels a pruned network keeps (``DenseNet/pruned(ratio:)``), or nil for the full network.
  public var pruning: DenseNetPruning? = nil
  /// A configuration from its parts.
  public init(
    growthRate: Int, blocks: [Int], bottleneck: Bool, compression: Double, initialChannels: Int, dropRate: Double = 0,
    classCount: Int, inputChannels: Int = 3, stem: Stem
  ) {
    (self.growthRate, self.blocks, self.bottleneck, self.compression, self.initialChannels) =
      (growthRate, blocks, bottleneck, compression, initialChannels)
    (self.dropRate, self.classCount, self.inputChannels, self.stem) = (dropRate, classCount, inputChannels, stem)
  }

  /// The three-block CIFAR model of depth L: (L - 4) / 3 layers per block for plain DenseNet and
  /// (L - 4) / 6 for DenseNet-BC. The stem width defaults to 16 for plain DenseNet and 2k for BC
  /// (the paper's settings; docs/models.md); the compression to 1 and 0.5.
  ///
  /// - Throws: ``ModelError`` when the depth does not divide into three blocks.
  public static func cifar(
    depth: Int, growthRate: Int, bottleneck: Bool, compression: Double? = nil, initialChannels: Int? = nil,
    dropRate: Double = 0, classCount: Int = 10, inputChannels: Int = 3
  ) throws -> DenseNetConfiguration {
    let convsPerLayer = bottleneck ? 2 : 1
    guard depth > 4, (depth - 4) % (3 * convsPerLayer) == 0 else {
      throw ModelError.invalid("DenseNet\(bottleneck ? "-BC" : "") depth \(depth) is not 4 + \(3 * convsPerLayer)n")
    }
    guard growthRate > 0 else { throw ModelError.invalid("growth rate must be positive, got \(growthRate)") }
    let theta = compression ?? (bottleneck ? 0.5 : 1)
    guard theta > 0 && theta <= 1 else { throw ModelError.invalid("compression must be in (0, 1], got \(theta)") }
    guard (0..<1).contains(dropRate) else { throw ModelError.invalid("drop rate must be in [0, 1), got \(dropRate)") }
    let n = (depth - 4) / (3 * convsPerLayer)
    let stemWidth = initialChannels ?? (bottleneck ? 2 * growthRate : 16)
    guard stemWidth > 0 else { throw ModelError.invalid("the stem must have at least one channel, got \(stemWidth)") }
    var width = stemWidth
    for block in 0..<2 {
      width = Int((Double(width + n * growthRate) * theta).rounded(.down))
      guard width > 0 else {
        throw ModelError.invalid("compression \(theta) leaves transition \(block + 1) without channels")
      }
    }
    return DenseNetConfiguration(
      growthRate: growthRate, blocks: [n, n, n], bottleneck: bottleneck, compression: theta,
      initialChannels: stemWidth, dropRate: dropRate, classCount: classCount,
      inputChannels: inputChannels, stem: .cifar)
  }

  /// An ImageNet model (DenseNet-BC with a 7x7 stem) with the given blocks and growth rate.
  public static func imagenet(blocks: [Int], growthRate: Int, classCount: Int = 1000, inputChannels: Int = 3) -> DenseNetConfiguration {
    DenseNetConfiguration(
      growthRate: growthRate, blocks: blocks, bottleneck: true, compression: 0.5, initialChannels: 2 * growthRate,
      classCount: classCount, inputChannels: inputChannels, stem: .imagenet)
  }

  /// DenseNet-121: k = 32, blocks 6, 12, 24, 16.
  public static let densenet121 = imagenet(blocks: [6, 12, 24, 16], growthRate: 32)
  /// DenseNet-169: k = 32, blocks 6, 12, 32, 32.
  public static let densenet169 = imagenet(blocks: [6, 12, 32, 32], growthRate: 32)
  /// DenseNet-201: k = 32, blocks 6, 12, 48, 32.
  public static let densenet201 = imagenet(blocks: [6, 12, 48, 32], growthRate: 32)
  /// DenseNet-161: k = 48, blocks 6, 12, 36, 24.
  public static let densenet161 = imagenet(blocks: [6, 12, 36, 24], growthRate: 48)
  /// DenseNet-264: k = 32, blocks 6, 12, 64, 48.
  public static let densenet264 = imagenet(blocks: [6, 12, 64, 48], growthRate: 32)
  /// DenseNet-264 with k = 48 (the memory-efficient report's model).
  public static let densenet264k48 = imagenet(blocks: [6, 12, 64, 48], growthRate: 48)
  /// DenseNet-232 with k = 48, blocks 6, 12, 48, 48 (the memory-efficient report's model).
  public static let densenet232 = imagenet(blocks: [6, 12, 48, 48], growthRate: 48)
}

/// A model configuration that cannot be built.
public enum ModelError: Error, CustomStringConvertible, Equatable {
  /// The configuration is inconsistent; the text says how.
  case invalid(String)

  /// The problem.
  public var description: String {
    switch self {
    case .invalid(let why): return why
    }
  }
}
