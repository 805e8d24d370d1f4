import Reprise
import TestSupport
import XCTest

/// The pre-activation unit's kernels against the composition they replace, bit for bit.
final class BatchNormConvolutionTests: XCTestCase {
  /// Configurations on every path: normalised while padded (stride-1 kernels larger than 1x1),
  /// normalised as Winograd's input transform copies its planes (3x3 with 8 channels or more on
  /// planes of 8 x 8 or more, both tile sizes; Float64 takes the shifted grid, normalising as it pads, with few
  /// outputs and with many), normalised chunk by chunk (pointwise: one chunk, and several chunks
  /// in ranges of their own per thread, ungrouped and grouped) and composed (strided, wide outputs
  /// in the backward pass); both dtypes and both layouts.
  func testKernelsEqualTheComposition() {
    struct Case {
      let channels: Int, outputs: Int, kernel: Int, stride: Int, padding: Int, dilation: Int, groups: Int
      var height = 7, width = 6
    }
    let cases = [
      Case(channels: 8, outputs: 4, kernel: 3, stride: 1, padding: 1, dilation: 1, groups: 1),
      Case(channels: 12, outputs: 6, kernel: 3, stride: 1, padding: 0, dilation: 1, groups: 1),
      Case(channels: 16, outputs: 8, kernel: 3, stride: 1, padding: 1, dilation: 1, groups: 2),
      Case(channels: 8, outputs: 5, kernel: 3, stride: 1, padding: 2, dilation: 2, groups: 1),
      Case(channels: 8, outputs: 40, kernel: 3, stride: 1, padding: 1, dilation: 1, groups: 1),
      Case(channels: 8, outputs: 4, kernel: 1, stride: 1, padding: 0, dilation: 1, groups: 1),
      Case(channels: 8, outputs: 4, kernel: 3, stride: 2, padding: 1, dilation: 1, groups: 1),
      Case(channels: 12, outputs: 9, kernel: 3, stride: 1, padding: 1, dilation: 1, groups: 1, height: 9, width: 8),
      Case(channels: 10, outputs: 8, kernel: 3, stride: 1, padding: 1, dilation: 1, groups: 1, height: 8, width: 9),
      Case(channels: 12, outputs: 40, kernel: 3, stride: 1, padding: 1, dilation: 1, groups: 1, height: 9, width: 8),
      Case(channels: 9, outputs: 10, kernel: 3, stride: 1, padding: 1, dilation: 1, groups: 1, height: 8, width: 14),
      Case(channels: 8, outputs: 12, kernel: 3, stride: 1, padding: 1, dilation: 1, groups: 1, height: 8, width: 8),
      Case(channels: 80, outputs: 12, kernel: 1, stride: 1, padding: 0, dilation: 1, groups: 1, height: 32, width: 32),
      Case(channels: 80, outputs: 12, kernel: 1, stride: 1, padding: 0, dilation: 1, groups: 2, height: 32, width: 32),
    ]
    var random = RandomGenerator(seed: 31)
    for (i, c) in cases.enumerated() {
      for dtype in [DType.float32, .float64] {
        for channelMajor in [false, true] {
          let context = "case \(i) \(c) \(dtype) \(channelMajor ? "channel-major" : "image-major") (seed 31)"
          var x = Tensor(randomNormal: [3, c.channels, c.height, c.width], dtype: dtype, using: &random)
          if channelMajor { x = permute(permute(x, [1, 0, 2, 3]).contiguous(), [1, 0, 2, 3]) }
          let gamma = Tensor(randomNormal: [c.channels], dtype: dtype, using: &random)
          let beta = Tensor(randomNormal: [c.channels], dtype: dtype, using: &random)
          let w = Tensor(randomNormal: [c.outputs, c.channels / c.groups, c.kernel, c.kernel], dtype: dtype, using: &random)
          let (mean, variance) = batchNormStatistics(x)
          let a = batchNormalized(x, mean: mean, variance: variance, weight: gamma, bias: beta, epsilon: 1e-5, applyingReLU: true)
          let composed = conv2d(a, w, stride: IntOrPair(c.stride), padding: IntOrPair(c.padding), dilation: IntOrPair(c.dilation), groups: c.groups)
          let fused = batchNormReLUConv2d(
            x, mean: mean, variance: variance, normWeight: gamma, normBias: beta, epsilon: 1e-5, convWeight: w,
            stride: IntOrPair(c.stride), padding: IntOrPair(c.padding), dilation: IntOrPair(c.dilation), groups: c.groups)
          assertBitIdentical(fused, composed, "forward, \(context)")
          let dy = Tensor(randomNormal: composed.shape, dtype: dtype, using: &random)
          let (da, dw) = conv2dBackward(
            dy, input: a, weight: w, stride: IntOrPair(c.stride), padding: IntOrPair(c.padding), dilation: IntOrPair(c.dilation), groups: c.groups)
          let n = batchNormBackward(da, x, mean: mean, variance: variance, weight: gamma, bias: beta, epsilon: 1e-5, applyingReLU: true)
          let g = batchNormReLUConv2dBackward(
            dy, input: x, mean: mean, variance: variance, normWeight: gamma, normBias: beta, epsilon: 1e-5, convWeight: w,
            stride: IntOrPair(c.stride), padding: IntOrPair(c.padding), dilation: IntOrPair(c.dilation), groups: c.groups)
          assertBitIdentical(g.input, n.input, "input gradient, \(context)")
          assertBitIdentical(g.normWeight, n.weight, "norm weight gradient, \(context)")
          assertBitIdentical(g.normBias, n.bias, "norm bias gradient, \(context)")
          assertBitIdentical(g.convWeight, dw, "conv weight gradient, \(context)")
        }
      }
    }
  }
}
