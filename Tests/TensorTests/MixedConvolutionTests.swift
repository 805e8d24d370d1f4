import Reprise
import TestSupport
import XCTest

/// `mixedConv2d` and its gradients against the composition they replace: split the input,
/// convolve each part, concatenate.
final class MixedConvolutionTests: XCTestCase {
  /// Parts that take each path of the convolution plan: Winograd (3x3 over 8 channels), the shifted
  /// grid (5x5 and 7x7), the phase grids (stride 2), im2col (one channel), the pointwise GEMM and
  /// the depthwise loops (one channel to one).
  static let cases: [(channels: [Int], outputs: [Int], kernels: [Int], stride: Int, plane: [Int])] = [
    ([8, 3, 3], [8, 2, 4], [3, 5, 7], 1, [9, 10]),
    ([4, 1, 3], [3, 2, 2], [3, 3, 1], 1, [9, 10]),
    ([6, 5, 5], [6, 5, 5], [3, 5, 7], 2, [9, 10]),
    ([1, 1, 1], [2, 1, 1], [3, 5, 7], 1, [7, 6]),
  ]

  /// The same bits as the composition, forward and backward, in Float32 (the vector kernels
  /// writing into channel ranges of one result) and Float64, from channel-major and row-major
  /// inputs.
  func testEqualsTheCompositionBitForBit() {
    var random = RandomGenerator(seed: 71)
    for dtype in DType.allCases {
      for (channels, outputs, kernels, stride, plane) in Self.cases {
        for channelMajor in [false, true] {
          let context = "\(dtype), channels \(channels), kernels \(kernels), stride \(stride), channel-major \(channelMajor)"
          let planes = Tensor(randomNormal: [channels.reduce(0, +), 2] + plane, dtype: dtype, using: &random)
          let x = channelMajor ? permute(planes, [1, 0, 2, 3]) : permute(planes, [1, 0, 2, 3]).contiguous()
          let weights = zip(zip(outputs, channels), kernels).map { oc, k in
            Tensor(randomNormal: [oc.0, oc.1, k, k], dtype: dtype, using: &random)
          }
          let paddings = kernels.map { IntOrPair(($0 - 1) / 2) }
          let parts = split(x, sizes: channels, alongAxis: 1)
          let expected = concatenate(
            (0..<parts.count).map { conv2d(parts[$0], weights[$0], stride: .init(stride), padding: paddings[$0]) }, alongAxis: 1)
          let y = mixedConv2d(x, weights, stride: .init(stride), paddings: paddings)
          assertBitIdentical(y, expected, "output, \(context)")

          let dy = Tensor(randomNormal: y.shape, dtype: dtype, using: &random)
          let dyParts = split(dy, sizes: outputs, alongAxis: 1)
          let partGradients = (0..<parts.count).map {
            conv2dBackward(dyParts[$0], input: parts[$0], weight: weights[$0], stride: .init(stride), padding: paddings[$0])
          }
          let gradients = mixedConv2dBackward(dy, input: x, weights: weights, stride: .init(stride), paddings: paddings)
          assertBitIdentical(gradients.input, concatenate(partGradients.map(\.input), alongAxis: 1), "input gradient, \(context)")
          for (i, part) in partGradients.enumerated() {
            assertBitIdentical(gradients.weights[i], part.weight, "weight \(i) gradient, \(context)")
          }
        }
      }
    }
  }

  /// Parts whose channels do not add up to the input's, and parts of different output sizes, stop
  /// with a message naming the shapes.
  func testMismatchedPartsNameShapes() {
    assertStops(withMessageContaining: ["mixedConv2d: the weights' input channels [2, 2] do not add up to the input's 5", "[1, 5, 8, 8]"], in: self) {
      _ = mixedConv2d(Tensor(zeros: [1, 5, 8, 8]), [Tensor(zeros: [2, 2, 3, 3]), Tensor(zeros: [2, 2, 5, 5])], paddings: [1, 2])
    }
    assertStops(withMessageContaining: ["mixedConv2d: outputs", "differ in size", "paddings"], in: self) {
      _ = mixedConv2d(Tensor(zeros: [1, 4, 8, 8]), [Tensor(zeros: [2, 2, 3, 3]), Tensor(zeros: [2, 2, 5, 5])], paddings: [1, 1])
    }
  }
}
