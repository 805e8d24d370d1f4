import ArgumentParser
import Reprise

/// Every model the tool builds: the one list that `--model`'s values, help, labels, natural input
/// sizes and smallest inputs all come from.
enum ModelName: String, CaseIterable, ExpressibleByArgument {
  case densenet, densenetBC = "densenet-bc"
  case densenet121, densenet169, densenet201, densenet161, densenet264, densenet264K48 = "densenet264-k48", densenet232
  case seqresnet, seqresnetB = "seqresnet-b", seqresnetB22 = "seqresnet-b22", seqresnetB42 = "seqresnet-b42", seqresnext24
  case resnet20, resnet50, seresnet56, shakenet = "shakenet26-2x96d", mobilenetv2

  /// How the model is configured from the command line.
  enum Family {
    /// A CIFAR DenseNet of `--depth` and `--growth-rate`.
    case cifarDenseNet
    /// A CIFAR SeqResNet of `--granularity`, `--widening` and `--blocks-per-stage`.
    case cifarSeqResNet
    /// A CIFAR network whose blocks take `--conv`.
    case convolutionVariants
    /// A fixed ImageNet model.
    case imagenet
  }

  var family: Family {
    switch self {
    case .densenet, .densenetBC: return .cifarDenseNet
    case .seqresnet, .seqresnetB: return .cifarSeqResNet
    case .resnet20, .resnet50, .seresnet56, .shakenet, .mobilenetv2: return .convolutionVariants
    default: return .imagenet
    }
  }

  /// The input size the model is made for: [3, 32, 32] for CIFAR models, [3, 224, 224] for ImageNet ones.
  var naturalInputShape: [Int] { family == .imagenet ? [3, 224, 224] : [3, 32, 32] }

  /// Classes when neither --classes nor a data set says: 1000 for ImageNet models, 10 otherwise.
  var defaultClassCount: Int { family == .imagenet ? 1000 : 10 }

  /// The smallest height and width the model's downsampling leaves at least one position of.
  /// DenseNets pool without padding: twice for CIFAR models (4x4), and for ImageNet ones after a
  /// stride-2 stem and max-pooling three times (29x29). The other models downsample with padded
  /// strided convolutions, which leave one position of any input. Tests check each value and the
  /// one below it.
  var minimumInputSize: Int {
    switch self {
    case .densenet, .densenetBC: return 4
    case .densenet121, .densenet169, .densenet201, .densenet161, .densenet264, .densenet264K48, .densenet232: return 29
    default: return 1
    }
  }
}

extension ConvolutionVariant: ExpressibleByArgument {}

/// `--dtype float32|float64`.
extension DType: ExpressibleByArgument {}
