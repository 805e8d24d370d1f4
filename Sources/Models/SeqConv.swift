import Autograd
import NN
import TensorModule

/// The official code's "conv unit": convolution (no bias), BN, ReLU, returning both the raw map
/// (before BN: the residual stream) and the activated one (docs/models.md).
public final class ConvUnit: Layer {
  let conv: Conv2d, norm: BatchNorm2d

  /// A unit from `inputChannels` to `outputChannels` with padding (kernel - 1) / 2 and uniform
  /// He initialisation by fan-out (docs/models.md).
  public init(inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, groups: Int = 1) {
    conv = Conv2d(
      inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: .init(kernelSize), stride: .init(stride),
      padding: .init((kernelSize - 1) / 2), groups: groups, bias: false, initializer: .kaimingUniform(.fanOut))
    norm = BatchNorm2d(channels: outputChannels)
  }

  /// `conv` and `norm`.
  public var children: [(name: String, module: any Module)] { [("conv", conv), ("norm", norm)] }

  /// The raw and the activated output.
  public func pair(_ input: Variable) -> (raw: Variable, activated: Variable) {
    let raw = conv(input)
    return (raw, norm(raw, applyingReLU: true))
  }

  /// The activated output.
  public func callAsFunction(_ input: Variable) -> Variable { pair(input).activated }
}

/// One filter of a sequentially aggregated layer: a transform of its window to k channels, the
/// junction with a slice of the shortcut, then BN and ReLU (docs/models.md).
public final class SeqFilter: Module {
  /// The bottleneck's 1x1 convolution and its BN, for SeqConvB filters.
  let reduce: (conv: Conv2d, norm: BatchNorm2d)?
  /// The 3x3 convolution: window to k channels (plain) or k to k in `subgroups` groups (bottleneck).
  let conv: Conv2d
  /// The junction's batch norm.
  let norm: BatchNorm2d

  init(windowChannels: Int, granularity k: Int, bottleneck: Bool, subgroups: Int, zeroInitialized: Bool) {
    func conv(_ input: Int, _ size: Int, groups: Int = 1, zero: Bool = false) -> Conv2d {
      Conv2d(
        inputChannels: input, outputChannels: k, kernelSize: .init(size), padding: .init(size / 2), groups: groups, bias: false,
        initializer: zero ? .constant(0) : .kaimingUniform(.fanOut))
    }
    reduce = bottleneck ? (conv(windowChannels, 1), BatchNorm2d(channels: k)) : nil
    self.conv = bottleneck ? conv(k, 3, groups: subgroups, zero: zeroInitialized) : conv(windowChannels, 3, zero: zeroInitialized)
    norm = BatchNorm2d(channels: k)
  }

  /// Plain: `conv`, `norm`; bottleneck: `conv1`, `norm1` (the 1x1 and its BN), `conv2`, `norm2`.
  public var children: [(name: String, module: any Module)] {
    guard let reduce else { return [("conv", conv), ("norm", norm)] }
    return [("conv1", reduce.conv), ("norm1", reduce.norm), ("conv2", conv), ("norm2", norm)]
  }

  /// The raw output (transform plus the shortcut slice) and its activation; `mask` drops
  /// channels of the window (window dropout) as the first convolution reads it.
  func callAsFunction(_ window: Variable, dropping mask: Tensor?, shortcut: Variable?) -> (raw: Variable, activated: Variable) {
    let t = reduce.map { conv($0.norm($0.conv(window, scalingPlanes: mask), applyingReLU: true)) } ?? conv(window, scalingPlanes: mask)
    let raw = shortcut.map { t + $0 } ?? t
    return (raw, norm(raw, applyingReLU: true))
  }
}

/// A sequentially aggregated convolution layer (Huang, Ou, Wu and Feng, "Sequentially Aggregated
/// Convolutional Networks", ICCV Workshops 2019): `outputChannels / k` filters run
/// in order, and filter i reads a window of the channels [input | a_0 | ... | a_(i-1)], where a_j
/// are the activated outputs of the earlier filters:
///
/// | form      | window of filter i                         | transform                          |
/// |-----------|--------------------------------------------|------------------------------------|
/// | SeqConv   | all channels so far (dense)                | conv 3x3 to k                      |
/// | WSeqConv  | the last `inputChannels` channels          | conv 3x3 to k                      |
/// | SeqConvB  | either                                     | conv 1x1 to k, BN, ReLU, conv 3x3  |
/// | ResNeXt   | either                                     | as SeqConvB, 3x3 in `subgroups`    |
///
/// The input and the outputs live in one growing channel buffer (`FeatureBuffer`), so a window
/// is a view, not a copy. Its filters are the units of a chain: a plan that makes each a checkpoint
/// region (``SeqResNet/memoryEfficientPlan()``) leaves a layer keeping nothing after its forward pass
/// but its outputs, and replays each filter in the backward pass.
public final class SeqConv: Chain, Layer {
  /// The filters, `filter1`, `filter2`, ...
  public let filters: [SeqFilter]
  let inputChannels: Int, granularity: Int, windowed: Bool
  let windowDropout: Dropout2d?

  /// A layer from `inputChannels` to `outputChannels` (a multiple of `granularity` k).
  ///
  /// - `windowed`: filters read the last `inputChannels` channels (WSeqConv) instead of all of them.
  /// - `zeroInitialized`: the last convolution of every filter starts at zero (the second layer
  ///   of a residual block).
  /// - `windowDropRate`: channel dropout on each filter's window, a fresh mask per filter (CIFAR).
  public init(
    inputChannels: Int, outputChannels: Int, granularity k: Int, windowed: Bool, bottleneck: Bool, subgroups: Int = 1,
    zeroInitialized: Bool = false, windowDropRate: Double = 0
  ) {
    require(
      k > 0 && outputChannels % k == 0 && k % subgroups == 0 && (!windowed || inputChannels % k == 0),
      "SeqConv: \(inputChannels) to \(outputChannels) channels do not divide into filters of \(k) (subgroups \(subgroups))")
    filters = (0..<outputChannels / k).map { i in
      SeqFilter(
        windowChannels: windowed ? inputChannels : inputChannels + i * k, granularity: k, bottleneck: bottleneck,
        subgroups: subgroups, zeroInitialized: zeroInitialized)
    }
    (self.inputChannels, granularity, self.windowed) = (inputChannels, k, windowed)
    windowDropout = windowDropRate > 0 ? Dropout2d(probability: windowDropRate) : nil
  }

  /// `filter1`, `filter2`, ...
  public var children: [(name: String, module: any Module)] { filters.enumerated().map { ("filter\($0 + 1)", $1) } }

  /// The filters, in order.
  public var units: [(name: String, module: any Module)] { children }

  /// The channels of the window filter `index` reads, counted in [input | a_0 | a_1 | ...].
  public func window(ofFilter index: Int) -> Range<Int> {
    windowed ? index * granularity..<index * granularity + inputChannels : 0..<inputChannels + index * granularity
  }

  /// The activated output.
  public func callAsFunction(_ input: Variable) -> Variable {
    let buffer = run(input, shortcut: nil).buffer
    return buffer.window(inputChannels..<buffer.channelCount)
  }

  /// The raw outputs (each filter's transform plus its slice of `shortcut`, [N, outputChannels,
  /// H, W]) and their activation.
  public func callAsFunction(_ input: Variable, shortcut: Variable?) -> (raw: Variable, activated: Variable) {
    let (raws, buffer) = run(input, shortcut: shortcut)
    return (raws.count == 1 ? raws[0] : concatenate(raws, alongAxis: 1), buffer.window(inputChannels..<buffer.channelCount))
  }

  /// The input followed by the activated output, [input | a_0 | a_1 | ...]: the buffer itself, no copy.
  public func extending(_ input: Variable) -> Variable { run(input, shortcut: nil).buffer.features }

  private func run(_ input: Variable, shortcut: Variable?) -> (raws: [Variable], buffer: FeatureBuffer) {
    let k = granularity, count = filters.count
    require(
      input.shape.count == 4 && input.shape[1] == inputChannels,
      "SeqConv: input \(input.shape) does not have \(inputChannels) channels in [N, C, H, W]")
    var shortcuts: [Variable]?
    if let shortcut {
      require(
        shortcut.shape == [input.shape[0], count * k, input.shape[2], input.shape[3]],
        "SeqConv: shortcut \(shortcut.shape) does not match the output [\(input.shape[0]), \(count * k), \(input.shape[2]), \(input.shape[3])]")
      shortcuts = count == 1 ? [shortcut] : split(shortcut, sizes: Array(repeating: k, count: count), alongAxis: 1)
    }
    // Windowed filters start their windows every k channels, also inside the input.
    let buffer = FeatureBuffer(capacity: inputChannels + count * k, first: input, pieceSize: windowed ? k : nil)
    var raws: [Variable] = []
    for (i, filter) in filters.enumerated() {
      let inputs = [buffer.window(window(ofFilter: i))] + (shortcuts.map { [$0[i]] } ?? [])
      let body: ([Variable]) -> [Variable] = { [windowDropout] v in
        let (raw, activated) = filter(v[0], dropping: windowDropout?.mask(for: v[0]), shortcut: v.count > 1 ? v[1] : nil)
        return [raw, activated]
      }
      let outputs = checkpointUnit(filter, inputs, body)
      raws.append(outputs[0])
      buffer.append(outputs[1])
    }
    return (raws, buffer)
  }
}
