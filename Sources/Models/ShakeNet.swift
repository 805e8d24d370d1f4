import Autograd
import NN
import TensorModule

/// Shake-shake combination of two branches (Gastaldi 2017): α·a + (1 − α)·b forward and
/// β·g, (1 − β)·g backward, with independent α and β per image ([N, 1, 1, 1]).
///
/// Both are drawn by the caller before the operation runs, so a checkpoint replay that restores the
/// random generator (contract rule 4) draws the same pair. The pullback reads neither branch, so a
/// replay computes the mix only if something reads it (optimisation A): in a unit that ends its
/// region, neither the mix, nor the residual sum after it, nor the branches' last normalised maps.
///
/// - Precondition: `a` and `b` have the same shape and element type.
public func shakeShake(_ a: Variable, _ b: Variable, alpha: Tensor, beta: Tensor) -> Variable {
  require(
    a.shape == b.shape && a.dtype == b.dtype, "shakeShake: the branches are \(a.shape) (\(a.dtype)) and \(b.shape) (\(b.dtype))")
  let mix = { a.value * alpha + b.value * (alpha * -1 + 1) }
  return recordOperation("shakeShake", deferring: mix, shape: a.shape, dtype: a.dtype, inputs: [a, b]) { g in [g * beta, g * (beta * -1 + 1)] }
}

/// ShakeNet-26-2x96d with a Multiception-paper convolution variant in the first convolution of every
/// branch (docs/models.md): four units per stage at widths 96, 192, 384.
///
/// | stage   | output | units                                                              |
/// |---------|--------|--------------------------------------------------------------------|
/// | stem    | 32x32  | conv 3x3, 16 (bias, no BN)                                         |
/// | stage 1 | 32x32  | 4 x shake(2 x [ReLU, variant, ReLU, conv 3x3, BN]) + shortcut, 96   |
/// | stage 2 | 16x16  | 4 x ..., 192, the first with stride 2                              |
/// | stage 3 | 8x8    | 4 x ..., 384, the first with stride 2                              |
/// | head    | 1x1    | ReLU, 8x8 average pool, linear                                     |
public final class ShakeNet: Network {
  /// The stages in order, as `reprise summary` lists them.
  public let stages: [(name: String, layer: any Layer)]

  /// ShakeNet-26-2x96d: convolutions Normal(0, sqrt(2 / (K²·out))), BN 1 and 0, linear bias 0.
  public init(
    convolution: ConvolutionVariant, unitsPerStage: Int = 4, widths: [Int] = [96, 192, 384], classCount: Int = 10, inputChannels: Int = 3
  ) {
    let kernels = [[3, 5, 7], [3, 5], [3, 3]]
    var stages: [(String, any Layer)] = [("c_in", Models.convolution(inputChannels, 16, kernel: 3, bias: true, fan: .fanOut))]
    var width = 16
    for (s, stageWidth) in widths.enumerated() {
      let units: [(String, any Layer)] = (0..<unitsPerStage).map { u in
        let unit = ShakeUnit(
          inputChannels: u == 0 ? width : stageWidth, outputChannels: stageWidth, stride: u == 0 && s > 0 ? 2 : 1, convolution: convolution,
          kernels: kernels[s])
        return ("\(u)", unit)
      }
      stages.append(("layer\(s + 1)", Sequential(units)))
      width = stageWidth
    }
    let fc = Linear(inputFeatures: width, outputFeatures: classCount)
    fc.bias!.value = Tensor(zeros: [classCount])
    stages += [("relu", ReLU()), ("pool", GlobalAvgPool2d()), ("fc_out", fc)]
    self.stages = stages
    lastStage = widths.count > 1 ? "layer\(widths.count)" : nil
  }

  /// The name of the stage whose units the memory-efficient plan leaves out, if there are several.
  let lastStage: String?

  /// The stem `c_in`, `layer1` to `layer3`, `fc_out`.
  public var children: [(name: String, module: any Module)] { stages.filter { !$0.layer.namedParameters.isEmpty }.map { ($0.name, $0.layer) } }

  /// Every shake-shake unit but the last stage's a region that keeps nothing.
  ///
  /// The last stage's units keep their tapes: the peak falls in the first stage's backward pass,
  /// where a unit replays the largest maps beside the gradients of nearly every parameter (most of
  /// them in the last stage), and the last stage's tapes, of maps a quarter the size, are freed
  /// before then. As regions they would replay a third of the forward pass and lower no peak
  /// (docs/checkpointing.md#hand-made-plans). A network of one stage makes every unit a region.
  public func memoryEfficientPlan() -> CheckpointPlan {
    .units(of: self) { unit in
      unit.module is ShakeUnit && !(lastStage.map { unit.path.hasPrefix($0 + ".") } ?? false) ? .nothing : nil
    }
  }
}

/// A shake-shake unit: two branches combined by ``shakeShake(_:_:alpha:beta:)`` in training and
/// averaged at inference, plus the shortcut.
public final class ShakeUnit: Layer {
  let branches: [ShakeBranch]
  let shortcut: ShakeShortcut?

  init(inputChannels: Int, outputChannels: Int, stride: Int, convolution: ConvolutionVariant, kernels: [Int]) {
    branches = (0..<2).map { _ in
      ShakeBranch(
        variant: convolution.make(inputChannels: inputChannels, outputChannels: outputChannels, stride: stride, kernels: kernels, fan: .fanOut),
        conv: Models.convolution(outputChannels, outputChannels, kernel: 3, fan: .fanOut), norm: BatchNorm2d(channels: outputChannels))
    }
    shortcut = inputChannels == outputChannels && stride == 1 ? nil : ShakeShortcut(inputChannels: inputChannels, outputChannels: outputChannels, stride: stride)
  }

  /// `branch1`, `branch2` and `shortcut` when present.
  public var children: [(name: String, module: any Module)] {
    [("branch1", branches[0]), ("branch2", branches[1])] + (shortcut.map { [("shortcut", $0)] } ?? [])
  }

  /// The unit applied to `input`.
  public func callAsFunction(_ x: Variable) -> Variable {
    // Both branches and a projecting shortcut start with the same ReLU of the input: taken once,
    // it is one map written and kept instead of two or three, and one ReLU gradient.
    let activated = relu(x)
    let a = branches[0](activated: activated), b = branches[1](activated: activated), n = x.shape[0]
    let mixed: Variable
    if LearningPhase.current == .training {
      let alpha = Tensor(randomUniform: [n, 1, 1, 1], dtype: x.dtype), beta = Tensor(randomUniform: [n, 1, 1, 1], dtype: x.dtype)
      mixed = shakeShake(a, b, alpha: alpha, beta: beta)
    } else {
      mixed = (a + b) * 0.5
    }
    return mixed + (shortcut?(activated: activated) ?? x)
  }
}

/// A shake-shake branch: ReLU, the variant, ReLU, conv 3x3, BN. Where the variant ends in a batch
/// normalisation, that normalisation, the ReLU and the conv 3x3 run as one pre-activation unit
/// (``Layer/callAsFunction(_:followedByReLUAnd:)``), which keeps neither the normalised map nor its
/// ReLU. The parameters keep the names of the official code's `nn.Sequential` indices: `1` (the
/// variant), `3` (the conv) and `4` (the BN); `0` and `2` are its ReLUs.
final class ShakeBranch: Layer {
  let variant: any Layer, conv: Conv2d, norm: BatchNorm2d

  init(variant: any Layer, conv: Conv2d, norm: BatchNorm2d) { (self.variant, self.conv, self.norm) = (variant, conv, norm) }

  /// `1`, `3` and `4`.
  var children: [(name: String, module: any Module)] { [("1", variant), ("3", conv), ("4", norm)] }

  /// The branch applied to `input`.
  func callAsFunction(_ input: Variable) -> Variable { self(activated: relu(input)) }

  /// The branch after its first ReLU, applied to `activated`, the ReLU of its input.
  func callAsFunction(activated: Variable) -> Variable { norm(variant(activated, followedByReLUAnd: conv)) }
}

/// The shortcut between widths: ReLU, then two 1x1 convolutions to half the channels each, one on
/// the subsampled input and one on the input shifted by one pixel, concatenated, BN.
public final class ShakeShortcut: Layer {
  let conv1: Conv2d, conv2: Conv2d, bn: BatchNorm2d
  let stride: Int

  init(inputChannels: Int, outputChannels: Int, stride: Int) {
    conv1 = convolution(inputChannels, outputChannels / 2, kernel: 1, fan: .fanOut)
    conv2 = convolution(inputChannels, outputChannels / 2, kernel: 1, fan: .fanOut)
    bn = BatchNorm2d(channels: outputChannels)
    self.stride = stride
  }

  /// `conv1`, `conv2`, `bn`.
  public var children: [(name: String, module: any Module)] { [("conv1", conv1), ("conv2", conv2), ("bn", bn)] }

  /// The projected input.
  public func callAsFunction(_ input: Variable) -> Variable { self(activated: relu(input)) }

  /// The projection after the ReLU, applied to `x`, the ReLU of the input.
  func callAsFunction(activated x: Variable) -> Variable {
    let h = x.shape[2], w = x.shape[3]
    let shifted = pad(slice(slice(x, 1..<h, alongAxis: 2), 1..<w, alongAxis: 3), [(0, 0), (0, 0), (0, 1), (0, 1)])
    func subsample(_ v: Variable) -> Variable { stride == 1 ? v : avgPool2d(v, kernelSize: 1, stride: .init(stride)) }
    return bn(concatenate([conv1(subsample(x)), conv2(subsample(shifted))], alongAxis: 1))
  }
}
