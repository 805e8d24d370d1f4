import Reprise
import TestSupport
import XCTest

/// Conv2d and its two gradient kernels against naive reference loops.
final class ConvolutionTests: XCTestCase {
  struct Configuration: CustomStringConvertible {
    var batch, inputChannels, outputChannels, height, width, kernelHeight, kernelWidth: Int
    var stride, padding, dilation: IntOrPair
    var groups: Int
    var description: String {
      "N\(batch) C\(inputChannels) O\(outputChannels) \(height)x\(width) k\(kernelHeight)x\(kernelWidth) "
        + "s\(stride) p\(padding) d\(dilation) g\(groups)"
    }
  }

  /// Random configurations covering strides, padding, dilation, groups (depthwise included) and
  /// non-square sizes, each valid.
  static func randomConfigurations(_ count: Int, seed: UInt64) -> [Configuration] {
    var random = RandomGenerator(seed: seed)
    var result: [Configuration] = []
    while result.count < count {
      let groups = [1, 1, 2, 3][Int(random.next() % 4)]
      let depthwise = random.next() % 5 == 0
      let cin = depthwise ? groups * 2 : groups * Int(1 + random.next() % 3)
      let cout = depthwise ? cin : groups * Int(1 + random.next() % 3)
      let c = Configuration(
        batch: Int(1 + random.next() % 3), inputChannels: cin, outputChannels: cout,
        height: Int(3 + random.next() % 7), width: Int(3 + random.next() % 7),
        kernelHeight: Int(1 + random.next() % 3), kernelWidth: Int(1 + random.next() % 3),
        stride: IntOrPair(Int(1 + random.next() % 2), Int(1 + random.next() % 3)),
        padding: IntOrPair(Int(random.next() % 3), Int(random.next() % 2)),
        dilation: IntOrPair(Int(1 + random.next() % 2), Int(1 + random.next() % 2)),
        groups: depthwise ? cin : groups)
      let spanH = c.dilation.height * (c.kernelHeight - 1) + 1, spanW = c.dilation.width * (c.kernelWidth - 1) + 1
      if c.height + 2 * c.padding.height >= spanH && c.width + 2 * c.padding.width >= spanW { result.append(c) }
    }
    return result
  }

  /// The definition of the convolution, one multiply-add at a time, in Double.
  static func reference(_ x: [Double], _ w: [Double], _ c: Configuration) -> (output: [Double], shape: [Int]) {
    let oh = (c.height + 2 * c.padding.height - c.dilation.height * (c.kernelHeight - 1) - 1) / c.stride.height + 1
    let ow = (c.width + 2 * c.padding.width - c.dilation.width * (c.kernelWidth - 1) - 1) / c.stride.width + 1
    let cpg = c.inputChannels / c.groups, opg = c.outputChannels / c.groups
    var y = [Double](repeating: 0, count: c.batch * c.outputChannels * oh * ow)
    for n in 0..<c.batch {
      for o in 0..<c.outputChannels {
        let g = o / opg
        for oy in 0..<oh {
          for ox in 0..<ow {
            var total = 0.0
            for ci in 0..<cpg {
              for ky in 0..<c.kernelHeight {
                for kx in 0..<c.kernelWidth {
                  let iy = oy * c.stride.height - c.padding.height + ky * c.dilation.height
                  let ix = ox * c.stride.width - c.padding.width + kx * c.dilation.width
                  guard iy >= 0 && iy < c.height && ix >= 0 && ix < c.width else { continue }
                  let input = x[((n * c.inputChannels + g * cpg + ci) * c.height + iy) * c.width + ix]
                  total += input * w[((o * cpg + ci) * c.kernelHeight + ky) * c.kernelWidth + kx]
                }
              }
            }
            y[((n * c.outputChannels + o) * oh + oy) * ow + ox] = total
          }
        }
      }
    }
    return (y, [c.batch, c.outputChannels, oh, ow])
  }

  /// Stride-1 convolutions wide enough for the shifted-GEMM path (no im2col): padding, dilation,
  /// groups and non-square kernels.
  static let shiftedConfigurations = [
    Configuration(batch: 2, inputChannels: 8, outputChannels: 4, height: 5, width: 6, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, dilation: 1, groups: 1),
    Configuration(batch: 3, inputChannels: 16, outputChannels: 8, height: 4, width: 4, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 0, dilation: 1, groups: 2),
    Configuration(batch: 1, inputChannels: 9, outputChannels: 5, height: 7, width: 5, kernelHeight: 3, kernelWidth: 1, stride: 1, padding: [2, 0], dilation: [2, 1], groups: 1),
    Configuration(batch: 2, inputChannels: 8, outputChannels: 4, height: 1, width: 1, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, dilation: 1, groups: 1),
    // Padding wider than the kernel's reach: outputs beyond the input's size in both directions.
    Configuration(batch: 3, inputChannels: 8, outputChannels: 6, height: 4, width: 5, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: [3, 2], dilation: 1, groups: 1),
    // More than 32 outputs per group: without the direct kernels (Float64), the gradients take one
    // GEMM per tap.
    Configuration(batch: 2, inputChannels: 8, outputChannels: 40, height: 4, width: 5, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, dilation: 1, groups: 1),
    // Ungrouped with few input channels (a MixConv part): a 7x7 kernel over 5 channels.
    Configuration(batch: 2, inputChannels: 5, outputChannels: 6, height: 6, width: 5, kernelHeight: 7, kernelWidth: 7, stride: 1, padding: 3, dilation: 1, groups: 1),
    // The Float32 direct kernel's edges: rows of 8 + 5 positions, tiles of 6 + 6 + 1 outputs (and
    // of 6 + 1 input channels for the input gradient); rows of 4 and 20 positions, pairs of
    // positions spanning two rows and two images, a 3x5 kernel.
    Configuration(batch: 3, inputChannels: 7, outputChannels: 13, height: 5, width: 13, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, dilation: 1, groups: 1),
    Configuration(batch: 3, inputChannels: 6, outputChannels: 7, height: 3, width: 4, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, dilation: 1, groups: 1),
    Configuration(batch: 2, inputChannels: 6, outputChannels: 7, height: 3, width: 20, kernelHeight: 3, kernelWidth: 5, stride: 1, padding: [1, 2], dilation: 1, groups: 1),
  ]

  /// Strided convolutions with enough channels for the phase grids (the direct kernels on the
  /// input's phases): ResNet's 3x3 stride 2 on odd and on whole-tile widths, on rows long enough for
  /// the phases' vector copies (9 to 21 values a phase row, ends included), its 1x1 stride-2
  /// shortcut (one phase), a stride of 1 in one direction, strides and dilations that put several
  /// taps in a phase, a stride larger than the kernel (phases no tap reads, pixels beyond the last
  /// output's reach), a padding wider than the kernel's reach, MixConv's 5x5, and groups.
  static let stridedConfigurations = [
    Configuration(batch: 2, inputChannels: 4, outputChannels: 6, height: 9, width: 10, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1, dilation: 1, groups: 1),
    Configuration(batch: 1, inputChannels: 4, outputChannels: 5, height: 16, width: 16, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1, dilation: 1, groups: 1),
    Configuration(batch: 1, inputChannels: 4, outputChannels: 4, height: 5, width: 41, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1, dilation: 1, groups: 1),
    Configuration(batch: 2, inputChannels: 4, outputChannels: 4, height: 3, width: 18, kernelHeight: 3, kernelWidth: 3, stride: [1, 2], padding: [1, 0], dilation: 1, groups: 1),
    Configuration(batch: 3, inputChannels: 5, outputChannels: 4, height: 7, width: 8, kernelHeight: 1, kernelWidth: 1, stride: 2, padding: 0, dilation: 1, groups: 1),
    Configuration(batch: 2, inputChannels: 4, outputChannels: 4, height: 6, width: 9, kernelHeight: 3, kernelWidth: 3, stride: [1, 2], padding: 1, dilation: 1, groups: 1),
    Configuration(batch: 2, inputChannels: 6, outputChannels: 5, height: 11, width: 9, kernelHeight: 3, kernelWidth: 2, stride: [2, 3], padding: [2, 1], dilation: [2, 3], groups: 1),
    Configuration(batch: 2, inputChannels: 4, outputChannels: 5, height: 10, width: 9, kernelHeight: 2, kernelWidth: 2, stride: 3, padding: 0, dilation: 1, groups: 1),
    Configuration(batch: 1, inputChannels: 4, outputChannels: 4, height: 5, width: 6, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 3, dilation: 1, groups: 1),
    Configuration(batch: 1, inputChannels: 4, outputChannels: 7, height: 11, width: 12, kernelHeight: 5, kernelWidth: 5, stride: 2, padding: 2, dilation: 1, groups: 1),
    Configuration(batch: 2, inputChannels: 16, outputChannels: 8, height: 6, width: 7, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1, dilation: 1, groups: 2),
  ]

  /// Depthwise convolutions (the direct kernel): kernels 3, 5 and 7 with their paddings, strides,
  /// dilation, non-square kernels and maps smaller than the kernel's reach.
  static let depthwiseConfigurations = [
    Configuration(batch: 2, inputChannels: 3, outputChannels: 3, height: 7, width: 6, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, dilation: 1, groups: 3),
    Configuration(batch: 3, inputChannels: 4, outputChannels: 4, height: 8, width: 9, kernelHeight: 5, kernelWidth: 5, stride: 2, padding: 2, dilation: 1, groups: 4),
    Configuration(batch: 1, inputChannels: 2, outputChannels: 2, height: 5, width: 4, kernelHeight: 7, kernelWidth: 7, stride: 1, padding: 3, dilation: 1, groups: 2),
    Configuration(batch: 2, inputChannels: 5, outputChannels: 5, height: 9, width: 7, kernelHeight: 3, kernelWidth: 2, stride: [1, 3], padding: [2, 1], dilation: [2, 1], groups: 5),
    // Strided ones through the phase grids: MobileNetV2's 3x3 stride 2 on rows of 32 (whole tiles of
    // 8) and of odd width, stride 3 with dilation, a stride larger than the kernel (phases with no
    // tap), and no padding.
    Configuration(batch: 1, inputChannels: 2, outputChannels: 2, height: 32, width: 32, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1, dilation: 1, groups: 2),
    Configuration(batch: 2, inputChannels: 2, outputChannels: 2, height: 11, width: 13, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1, dilation: 1, groups: 2),
    Configuration(batch: 1, inputChannels: 3, outputChannels: 3, height: 17, width: 19, kernelHeight: 3, kernelWidth: 5, stride: [3, 2], padding: [2, 3], dilation: [2, 3], groups: 3),
    Configuration(batch: 2, inputChannels: 2, outputChannels: 2, height: 10, width: 9, kernelHeight: 2, kernelWidth: 2, stride: 3, padding: 0, dilation: 1, groups: 2),
    Configuration(batch: 1, inputChannels: 2, outputChannels: 2, height: 16, width: 20, kernelHeight: 7, kernelWidth: 7, stride: 2, padding: 3, dilation: 1, groups: 2),
    // 8 channels to a vector (DepthwiseConvolution+Lanes.swift): whole groups of 8 and a partial last
    // one; planes of 4x4 and 2x2, and of 8x8 with stride 2 (an input gradient spread through the
    // taps, as with padding beyond the kernel's reach); 49 taps, more than stay in registers; and
    // weight gradients of planes 12 and 70 wide, their Float32 sums over blocks of 5 rows and of 1.
    Configuration(batch: 3, inputChannels: 13, outputChannels: 13, height: 4, width: 4, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, dilation: 1, groups: 13),
    Configuration(batch: 2, inputChannels: 9, outputChannels: 9, height: 2, width: 2, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, dilation: 1, groups: 9),
    Configuration(batch: 2, inputChannels: 17, outputChannels: 17, height: 8, width: 8, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1, dilation: 1, groups: 17),
    Configuration(batch: 1, inputChannels: 10, outputChannels: 10, height: 4, width: 5, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 3, dilation: 1, groups: 10),
    Configuration(batch: 2, inputChannels: 9, outputChannels: 9, height: 6, width: 6, kernelHeight: 7, kernelWidth: 7, stride: 1, padding: 3, dilation: 1, groups: 9),
    Configuration(batch: 1, inputChannels: 9, outputChannels: 9, height: 16, width: 12, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, dilation: 1, groups: 9),
    Configuration(batch: 1, inputChannels: 9, outputChannels: 9, height: 3, width: 70, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, dilation: 1, groups: 9),
  ]

  /// Forward and both gradients (separately and from `conv2dBackward`) agree with the reference to
  /// 1e-5 relative in Float32 on 24 random configurations and the shifted, strided and depthwise
  /// ones above.
  func testForwardAndGradientsMatchReferenceLoops() {
    Self.checkAgainstReference(
      Self.randomConfigurations(24, seed: 7) + Self.shiftedConfigurations + Self.stridedConfigurations + Self.depthwiseConfigurations,
      dtype: .float32, tolerance: 1e-5)
  }

  /// The same in Float64 for the shifted configurations: where the processor has the Float32 direct
  /// kernels, Float64 is what still runs the shifted grid's matrix-product paths (the stacked forward
  /// for up to 8 outputs, one GEMM per tap beyond, and their gradients).
  func testShiftedMatrixProductPathsInFloat64() {
    Self.checkAgainstReference(Self.shiftedConfigurations, dtype: .float64, tolerance: 1e-10)
  }

  /// Checks `conv2d`, `conv2dBackwardInput`, `conv2dBackwardWeight` and `conv2dBackward` on each
  /// configuration against the reference. The gradients are checked through the identity
  /// <dy, conv(x, w)> = <dx, x> = <dw, w> applied to one-hot probes of the reference.
  static func checkAgainstReference(
    _ configurations: [Configuration], dtype: DType, tolerance: Double, file: StaticString = #filePath, line: UInt = #line
  ) {
    for (k, c) in configurations.enumerated() {
      var random = RandomGenerator(seed: UInt64(100 + k))
      let xShape = [c.batch, c.inputChannels, c.height, c.width]
      let wShape = [c.outputChannels, c.inputChannels / c.groups, c.kernelHeight, c.kernelWidth]
      let x = Tensor(randomNormal: xShape, dtype: dtype, using: &random), w = Tensor(randomNormal: wShape, dtype: dtype, using: &random)
      let xs = x.scalars(as: Double.self), ws = w.scalars(as: Double.self)
      let (expected, shape) = Self.reference(xs, ws, c)
      let y = conv2d(x, w, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups)
      assertClose(y, Tensor(expected, shape: shape).converted(to: dtype), relativeTolerance: tolerance, absoluteTolerance: tolerance, "seed \(100 + k) \(c)", file: file, line: line)

      let dy = Tensor(randomNormal: shape, dtype: dtype, using: &random), dys = dy.scalars(as: Double.self)
      // dx[i] = sum over outputs of dy * d(conv)/dx[i]; conv is linear in x, so probe with one-hot x.
      var dxExpected = [Double](repeating: 0, count: xs.count)
      for i in xs.indices {
        var probe = [Double](repeating: 0, count: xs.count)
        probe[i] = 1
        dxExpected[i] = zip(Self.reference(probe, ws, c).output, dys).reduce(0) { $0 + $1.0 * $1.1 }
      }
      var dwExpected = [Double](repeating: 0, count: ws.count)
      for i in ws.indices {
        var probe = [Double](repeating: 0, count: ws.count)
        probe[i] = 1
        dwExpected[i] = zip(Self.reference(xs, probe, c).output, dys).reduce(0) { $0 + $1.0 * $1.1 }
      }
      let dx = conv2dBackwardInput(dy, w, inputShape: xShape, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups)
      let dw = conv2dBackwardWeight(dy, x, weightShape: wShape, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups)
      assertClose(dx, Tensor(dxExpected, shape: xShape).converted(to: dtype), relativeTolerance: tolerance, absoluteTolerance: tolerance, "dx seed \(100 + k) \(c)", file: file, line: line)
      assertClose(dw, Tensor(dwExpected, shape: wShape).converted(to: dtype), relativeTolerance: tolerance, absoluteTolerance: tolerance, "dw seed \(100 + k) \(c)", file: file, line: line)
      // Both at once (shared work on the shifted path): the same arithmetic, so the same bits.
      let both = conv2dBackward(dy, input: x, weight: w, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups)
      XCTAssertEqual(both.input.scalars(as: Double.self), dx.scalars(as: Double.self), "conv2dBackward input \(c)", file: file, line: line)
      XCTAssertEqual(both.weight.scalars(as: Double.self), dw.scalars(as: Double.self), "conv2dBackward weight \(c)", file: file, line: line)
    }
  }

  /// The output is [N, O, OH, OW] stored channel-major, and feeding it to another convolution (the
  /// direct 1x1 path) or a channel slice of it gives the same values as a row-major copy.
  func testChannelMajorOutputAndPointwisePath() {
    var random = RandomGenerator(seed: 3)
    let x = Tensor(randomNormal: [3, 5, 6, 7], using: &random)
    let w1 = Tensor(randomNormal: [8, 5, 3, 3], using: &random), w2 = Tensor(randomNormal: [4, 6, 1, 1], using: &random)
    let y = conv2d(x, w1, padding: 1)
    XCTAssertEqual(y.shape, [3, 8, 6, 7])
    XCTAssertEqual(y.strides, [42, 126, 7, 1])
    let part = slice(y, 1..<7, alongAxis: 1)
    let direct = conv2d(part, w2), viaCopy = conv2d(part.contiguous(), w2)
    assertClose(direct, viaCopy, relativeTolerance: 1e-6)
    let dx = conv2dBackwardInput(direct, w2, inputShape: part.shape)
    let dw = conv2dBackwardWeight(direct, part, weightShape: w2.shape)
    let dwCopy = conv2dBackwardWeight(direct.contiguous(), part.contiguous(), weightShape: w2.shape)
    assertClose(dw, dwCopy, relativeTolerance: 1e-5)
    XCTAssertEqual(dx.shape, part.shape)
  }

  /// The direct weight gradient over a grid long enough to be split into several pieces (16 images
  /// of 32x32: up to four per thread, each with its own sums) equals the Float64 path's to Float32
  /// rounding, and a second run gives the same bits.
  func testDirectWeightGradientInManyPiecesMatchesFloat64() {
    var random = RandomGenerator(seed: 31)
    let x = Tensor(randomNormal: [16, 4, 32, 32], using: &random), dy = Tensor(randomNormal: [16, 5, 32, 32], using: &random)
    let dw = conv2dBackwardWeight(dy, x, weightShape: [5, 4, 3, 3], padding: 1)
    let exact = conv2dBackwardWeight(dy.converted(to: .float64), x.converted(to: .float64), weightShape: [5, 4, 3, 3], padding: 1)
    assertClose(dw.converted(to: .float64), exact, relativeTolerance: 1e-4, absoluteTolerance: 1e-3)
    assertBitIdentical(conv2dBackwardWeight(dy, x, weightShape: [5, 4, 3, 3], padding: 1), dw)
  }

  /// Into a destination of parts, the input gradient is written over the overwriting parts and
  /// added (`old + new`, bit for bit) to the others, on Winograd's path (Float32, 3x3 over 8
  /// channels), which adds in its output transform, and on the others; the weight gradient is the
  /// plain call's.
  func testBackwardIntoPartsWritesOrAdds() {
    var random = RandomGenerator(seed: 45)
    for dtype in DType.allCases {
      for (kernel, padding) in [(3, 1), (2, 0)] {
        let x = channelMajor(Tensor(randomNormal: [3, 8, 9, 10], dtype: dtype, using: &random))
        let w = Tensor(randomNormal: [8, 8, kernel, kernel], dtype: dtype, using: &random)
        let dy = Tensor(randomNormal: conv2d(x, w, padding: .init(padding)).shape, dtype: dtype, using: &random)
        let expected = conv2dBackward(dy, input: x, weight: w, padding: .init(padding))
        let context = "\(dtype), \(kernel)x\(kernel)"
        let dw = assertDeliversIntoParts(expected.input, split: 3, using: &random, context) {
          conv2dBackward(dy, input: x, weight: w, padding: .init(padding), into: $0)
        }
        assertBitIdentical(dw, expected.weight, "weight, \(context)")
      }
    }
  }

  /// The same for depthwise convolutions: on the plane kernels' path (Float32 on AVX2, planes
  /// larger than the channel lanes take), which writes or adds each plane where it goes, at stride
  /// 1 and 2, on the channel lanes' (7x7 outputs), and on the others.
  func testDepthwiseBackwardIntoPartsWritesOrAdds() {
    var random = RandomGenerator(seed: 46)
    for dtype in DType.allCases {
      for (size, stride) in [(18, 1), (19, 2), (7, 1)] {
        let x = channelMajor(Tensor(randomNormal: [3, 8, size, size], dtype: dtype, using: &random))
        let w = Tensor(randomNormal: [8, 1, 3, 3], dtype: dtype, using: &random)
        let dy = Tensor(randomNormal: conv2d(x, w, stride: .init(stride), padding: 1, groups: 8).shape, dtype: dtype, using: &random)
        let expected = conv2dBackward(dy, input: x, weight: w, stride: .init(stride), padding: 1, groups: 8)
        let context = "\(dtype), \(size)x\(size), stride \(stride)"
        let dw = assertDeliversIntoParts(expected.input, split: 3, using: &random, context) {
          conv2dBackward(dy, input: x, weight: w, stride: .init(stride), padding: 1, groups: 8, into: $0)
        }
        assertBitIdentical(dw, expected.weight, "weight, \(context)")
      }
    }
  }

  /// Float64 kernels agree with the reference to near machine precision.
  func testFloat64() {
    let c = Configuration(
      batch: 2, inputChannels: 4, outputChannels: 6, height: 5, width: 6, kernelHeight: 3, kernelWidth: 2,
      stride: [2, 1], padding: [1, 0], dilation: 1, groups: 2)
    var random = RandomGenerator(seed: 9)
    let x = Tensor(randomNormal: [2, 4, 5, 6], dtype: .float64, using: &random)
    let w = Tensor(randomNormal: [6, 2, 3, 2], dtype: .float64, using: &random)
    let (expected, shape) = Self.reference(x.scalars(as: Double.self), w.scalars(as: Double.self), c)
    assertClose(conv2d(x, w, stride: [2, 1], padding: [1, 0], groups: 2), Tensor(expected, shape: shape), relativeTolerance: 1e-12)
  }

  /// Mismatched channels stop with a message naming the operation and every shape.
  func testChannelMismatchNamesShapes() {
    assertStops(withMessageContaining: ["conv2d: input has 3 channels, weight expects 4", "input [2, 3, 32, 32]", "weight [8, 4, 3, 3]"], in: self) {
      _ = conv2d(Tensor(zeros: [2, 3, 32, 32]), Tensor(zeros: [8, 4, 3, 3]))
    }
  }
}
