import NN

/// The hyperparameters of a SeqResNet, SeqResNet-B or SeqResNeXt (docs/models.md).
public struct SeqResNetConfiguration: Sendable, Equatable {
  /// The stem and the shape of the first stage.
  public enum Stem: Sendable, Equatable {
    /// conv 3x3 to 16, then a dense sequentially aggregated head at 32x32.
    case cifar
    /// conv 3x3/2 to 32 and conv 3x3 to 32, a dense head, then a strided grouped shrink to 56x56.
    case imagenet
  }

  /// Channels of each stage (C_s).
  public var stageWidths: [Int]
  /// Residual blocks per stage.
  public var blocksPerStage: [Int]
  /// The granularity k of each stage: channels per filter.
  public var granularities: [Int]
  /// The cardinality of each stage's bottleneck 3x3 convolutions (1 but for SeqResNeXt).
  public var subgroups: [Int]
  /// Whether filters have the 1x1 bottleneck (SeqResNet-B, SeqResNeXt).
  public var bottleneck: Bool
  /// Channel dropout on each window of the windowed layers (0.1 on CIFAR, hard-wired in the official code).
  public var windowDropRate: Double
  /// Channel dropout before the blender (the official code's `DropRate`).
  public var dropRate: Double
  /// Classes of the classifier.
  public var classCount: Int
  /// Channels of the input images.
  public var inputChannels: Int
  /// The stem.
  public var stem: Stem

  /// A configuration from its parts.
  public init(
    stageWidths: [Int], blocksPerStage: [Int], granularities: [Int], subgroups: [Int], bottleneck: Bool,
    windowDropRate: Double, dropRate: Double, classCount: Int, inputChannels: Int = 3, stem: Stem
  ) {
    (self.stageWidths, self.blocksPerStage, self.granularities, self.subgroups, self.bottleneck) =
      (stageWidths, blocksPerStage, granularities, subgroups, bottleneck)
    (self.windowDropRate, self.dropRate, self.classCount, self.inputChannels, self.stem) =
      (windowDropRate, dropRate, classCount, inputChannels, stem)
  }

  /// The CIFAR template SeqResNet(k, r, N) or, with `bottleneck`, SeqResNet-B(k, r, N): stage
  /// widths 16r, 32r, 48r (the paper's counts; docs/models.md), N blocks per stage, granularity k
  /// everywhere, channel dropout 0.1 on windows and `dropRate` before the blender.
  ///
  /// - Throws: ``ModelError`` when k does not divide 16r or a size is not positive.
  public static func cifar(
    granularity k: Int, widening r: Int, blocksPerStage n: Int, bottleneck: Bool, dropRate: Double = 0.1,
    classCount: Int = 10, inputChannels: Int = 3
  ) throws -> SeqResNetConfiguration {
    guard k > 0, r > 0, n > 0 else {
      throw ModelError.invalid("granularity, widening and blocks per stage must be positive, got k \(k), r \(r), N \(n)")
    }
    guard (16 * r) % k == 0 else { throw ModelError.invalid("granularity \(k) does not divide the stage width unit 16r = \(16 * r)") }
    guard (0..<1).contains(dropRate) else { throw ModelError.invalid("drop rate must be in [0, 1), got \(dropRate)") }
    return SeqResNetConfiguration(
      stageWidths: [16 * r, 32 * r, 48 * r], blocksPerStage: [n, n, n], granularities: [k, k, k], subgroups: [1, 1, 1],
      bottleneck: bottleneck, windowDropRate: 0.1, dropRate: dropRate, classCount: classCount, inputChannels: inputChannels,
      stem: .cifar)
  }

  /// An ImageNet model: widths 64W(1, 2, 4, 8), granularities G, cardinalities g (docs/models.md).
  static func imagenet(blocks: [Int], widening w: Int, subgroups: [Int]) -> SeqResNetConfiguration {
    SeqResNetConfiguration(
      stageWidths: [1, 2, 4, 8].map { 64 * w * $0 }, blocksPerStage: blocks, granularities: [32, 64, 64, 128],
      subgroups: subgroups, bottleneck: true, windowDropRate: 0, dropRate: 0, classCount: 1000, stem: .imagenet)
  }

  /// SeqResNet-B22: blocks 1, 1, 2, 1, W = 2 (11,859,656 parameters).
  public static let b22 = imagenet(blocks: [1, 1, 2, 1], widening: 2, subgroups: [1, 1, 1, 1])
  /// SeqResNet-B42: blocks 3, 4, 5, 3, W = 2 (25,642,696 parameters).
  public static let b42 = imagenet(blocks: [3, 4, 5, 3], widening: 2, subgroups: [1, 1, 1, 1])
  /// SeqResNeXt-24: blocks 1, 1, 3, 1, W = 4, cardinalities 8, 8, 4, 4 (26,211,784 parameters).
  public static let resnext24 = imagenet(blocks: [1, 1, 3, 1], widening: 4, subgroups: [8, 8, 4, 4])
}
