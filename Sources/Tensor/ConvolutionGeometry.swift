/// The sizes of one 2-D convolution, checked once and shared by its forward and backward kernels.
struct ConvolutionGeometry {
  /// Images: the one size a chunk of the batch changes (``images(_:)``).
  private(set) var batch: Int
  let inputChannels, height, width: Int
  let outputChannels, kernelHeight, kernelWidth: Int
  let stride, padding, dilation: IntOrPair
  let groups: Int
  let outputHeight, outputWidth: Int

  /// Checks the configuration and computes the output size, naming every shape in a failure.
  init(_ operation: String, input: [Int], weight: [Int], stride: IntOrPair, padding: IntOrPair, dilation: IntOrPair, groups: Int) {
    // A function, so that the description is only formatted for a message: every convolution call
    // makes a geometry, and formatting the arrays cost more than the checks.
    func describe() -> String {
      "(input \(input), weight \(weight), stride \(stride), padding \(padding), dilation \(dilation), groups \(groups))"
    }
    require(input.count == 4 && weight.count == 4, "\(operation): input and weight must have rank 4 \(describe())")
    require(
      groups >= 1 && input[1] % groups == 0 && weight[0] % groups == 0,
      "\(operation): channels are not divisible by groups \(describe())")
    require(
      input[1] / groups == weight[1],
      "\(operation): input has \(input[1]) channels, weight expects \(weight[1] * groups) \(describe())")
    require(
      stride.height >= 1 && stride.width >= 1 && dilation.height >= 1 && dilation.width >= 1
        && padding.height >= 0 && padding.width >= 0,
      "\(operation): stride and dilation must be positive and padding non-negative \(describe())")
    (batch, inputChannels, height, width) = (input[0], input[1], input[2], input[3])
    (outputChannels, kernelHeight, kernelWidth) = (weight[0], weight[2], weight[3])
    (self.stride, self.padding, self.dilation, self.groups) = (stride, padding, dilation, groups)
    let spanH = dilation.height * (kernelHeight - 1) + 1, spanW = dilation.width * (kernelWidth - 1) + 1
    require(
      height + 2 * padding.height >= spanH && width + 2 * padding.width >= spanW,
      "\(operation): kernel is larger than the padded input \(describe())")
    outputHeight = (height + 2 * padding.height - spanH) / stride.height + 1
    outputWidth = (width + 2 * padding.width - spanW) / stride.width + 1
  }

  /// The same convolution over `count` images: a chunk of the batch.
  func images(_ count: Int) -> ConvolutionGeometry {
    var chunk = self
    chunk.batch = count
    return chunk
  }

  var inputShape: [Int] { [batch, inputChannels, height, width] }
  var weightShape: [Int] { [outputChannels, inputChannels / groups, kernelHeight, kernelWidth] }
  var outputShape: [Int] { [batch, outputChannels, outputHeight, outputWidth] }
  /// Input channels per group.
  var groupInputs: Int { inputChannels / groups }
  /// Output channels per group.
  var groupOutputs: Int { outputChannels / groups }
  /// Rows of the im2col matrix of one group: input channels x kernel positions.
  var patchSize: Int { groupInputs * kernelHeight * kernelWidth }
  var outputPlane: Int { outputHeight * outputWidth }
  /// True when the convolution is a plain matrix product over channels (1x1, stride 1, no padding).
  var isPointwise: Bool {
    kernelHeight == 1 && kernelWidth == 1 && stride == 1 && padding == 0
  }
}

/// Where the planes of a 4-D image tensor lie: each (n, c) plane is a dense H x W block.
struct PlaneLayout {
  let imageStride: Int
  let channelStride: Int

  init(_ t: Tensor) {
    require(Self.hasDensePlanes(t), "internal: image tensor \(t.shape) with strides \(t.strides) has no dense planes")
    (imageStride, channelStride) = (t.strides[0], t.strides[1])
  }

  /// True when the layout has dense planes, which the convolution and pooling kernels require.
  static func hasDensePlanes(_ t: Tensor) -> Bool {
    t.rank == 4 && (t.shape[3] <= 1 || t.strides[3] == 1) && (t.shape[2] <= 1 || t.strides[2] == t.shape[3])
  }

  /// Dense strides for an image tensor of `shape` with H x W planes innermost and images and channels
  /// in the order `source` stores them (channel-major unless `source` is image-major). Pooling and
  /// its gradients use it for results whose shape differs from their operand's.
  static func strides(_ shape: [Int], orderedLike source: Tensor) -> [Int] {
    let (n, c) = (source.shape[0], source.shape[1])
    let imageMajor = n > 1 && c > 1 ? source.strides[0] > source.strides[1] : n == 1
    return imageMajor ? Shape.contiguousStrides(shape) : channelMajorStrides(shape)
  }

  /// The channel-major strides ([C, N, H, W] in memory) of a 4-D shape [N, C, H, W].
  static func channelMajorStrides(_ shape: [Int]) -> [Int] {
    [shape[2] * shape[3], shape[0] * shape[2] * shape[3], shape[3], 1]
  }
}

extension Tensor {
  /// This image tensor with dense H x W planes: itself if it has them, else a channel-major copy.
  func withDensePlanes() -> Tensor {
    PlaneLayout.hasDensePlanes(self) ? self : copied(strides: PlaneLayout.channelMajorStrides(shape))
  }

  /// This image tensor if it is dense with dense planes, else a channel-major copy; kernels that
  /// pair it element by element with another tensor of the same layout rely on both.
  func denseWithPlanes() -> Tensor {
    isDense && PlaneLayout.hasDensePlanes(self) ? self : copied(strides: PlaneLayout.channelMajorStrides(shape))
  }

  /// This image tensor in channel-major layout: itself if it has it, else a copy.
  func channelMajor() -> Tensor { laidOut(like: PlaneLayout.channelMajorStrides(shape)) }
}
