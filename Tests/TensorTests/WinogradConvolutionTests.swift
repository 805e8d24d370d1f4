@testable import TensorModule
import TestSupport
import XCTest

/// The Winograd path of 3x3 convolutions (F(2x2, 3x3) for the forward pass; for the gradients
/// F(4x4, 3x3) on planes 13 or more wide and on 8x8 planes, F(2x2, 3x3) on others): which geometries
/// take it, and that its forward pass and both gradients in Float32 equal the Float64 shifted grid's
/// (itself checked against the reference loops in ConvolutionTests) to within the transforms'
/// rounding.
final class WinogradConvolutionTests: XCTestCase {
  typealias Configuration = ConvolutionTests.Configuration

  static func layer(batch: Int, _ inputs: Int, _ outputs: Int, _ height: Int, _ width: Int, stride: IntOrPair = 1, padding: IntOrPair = 1, groups: Int = 1)
    -> Configuration
  {
    Configuration(
      batch: batch, inputChannels: inputs, outputChannels: outputs, height: height, width: width, kernelHeight: 3, kernelWidth: 3,
      stride: stride, padding: padding, dilation: 1, groups: groups)
  }

  /// 3x3, stride 1, padding 1, ungrouped, with at least 8 channels in and out on planes of 8 x 8 or
  /// more take Winograd; a step below any of these does not.
  func testOnlyWideThreeByThreeLayersTakeWinograd() {
    let name = { (c: Configuration) in ConvolutionPlanTests.methodName(ConvolutionPlan(ConvolutionPlanTests.geometry(c)).method) }
    XCTAssertEqual(name(Self.layer(batch: 2, 64, 64, 8, 8)), "winograd")
    XCTAssertEqual(name(Self.layer(batch: 2, 8, 8, 8, 8)), "winograd")
    XCTAssertEqual(name(Self.layer(batch: 1, 384, 128, 9, 13)), "winograd")
    XCTAssertEqual(name(Self.layer(batch: 2, 7, 64, 32, 32)), "shiftedGrid")
    XCTAssertEqual(name(Self.layer(batch: 2, 64, 7, 32, 32)), "shiftedGrid")
    XCTAssertEqual(name(Self.layer(batch: 2, 64, 64, 7, 8)), "shiftedGrid")
    XCTAssertEqual(name(Self.layer(batch: 2, 64, 64, 8, 7)), "shiftedGrid")
    XCTAssertEqual(name(Self.layer(batch: 2, 96, 96, 8, 8, padding: 2)), "shiftedGrid")
    XCTAssertEqual(name(Self.layer(batch: 2, 192, 192, 8, 8, groups: 2)), "shiftedGrid")
    XCTAssertNotEqual(name(Self.layer(batch: 2, 96, 96, 8, 8, stride: 2)), "winograd")
    // The forward pass keeps F(2x2, 3x3); the gradients take F(4x4, 3x3) where the planes allow.
    XCTAssertEqual(WinogradConvolution(ConvolutionPlanTests.geometry(Self.layer(batch: 2, 16, 16, 32, 32))).forwardTiling.tile, 2)
    let tile = { (c: Configuration) in WinogradConvolution(ConvolutionPlanTests.geometry(c)).gradientTiling.tile }
    XCTAssertEqual(tile(Self.layer(batch: 2, 16, 16, 8, 13)), 4)
    XCTAssertEqual(tile(Self.layer(batch: 2, 16, 16, 32, 12)), 2)
    XCTAssertEqual(tile(Self.layer(batch: 2, 16, 16, 8, 8)), 4)
    XCTAssertEqual(tile(Self.layer(batch: 2, 16, 16, 9, 8)), 2)
  }

  /// Forward, input gradient and weight gradient against Float64: odd and even plane sizes (tiles
  /// cut by the border), images in several chunks with a short last one, planes with 4 tiles to a
  /// row (two tile rows to a vector: 8 wide for F(2x2, 3x3), 13 for F(4x4, 3x3)) and an odd number
  /// of tile rows, rows of 5 and 10 tiles (a vector's last lanes past the row), 8x8 planes (two
  /// images to a vector) in chunks of one, two and three images (whose last pair has one), and a
  /// batch of one image; narrow layers whose products end in every partial block of rows (1 to 5 of
  /// 6) and in a partial vector of columns (for the weight gradient, whose columns are the channels:
  /// 9, 10, 12, 15 and 100), and 8 outputs; both gradients at once equal them apart.
  func testMatchesFloat64() {
    let layers = [
      Self.layer(batch: 4, 96, 100, 16, 17), Self.layer(batch: 3, 100, 64, 9, 8), Self.layer(batch: 1, 64, 96, 8, 11),
      Self.layer(batch: 2, 8, 13, 9, 10), Self.layer(batch: 3, 15, 9, 8, 8), Self.layer(batch: 2, 10, 11, 12, 9),
      Self.layer(batch: 2, 12, 8, 9, 10), Self.layer(batch: 2, 9, 12, 13, 37), Self.layer(batch: 3, 16, 10, 9, 13),
      Self.layer(batch: 9, 12, 16, 8, 8), Self.layer(batch: 12, 8, 9, 8, 8),
    ]
    for (k, c) in layers.enumerated() {
      var random = RandomGenerator(seed: UInt64(500 + k))
      let x = Tensor(randomNormal: [c.batch, c.inputChannels, c.height, c.width], using: &random)
      let w = Tensor(randomNormal: [c.outputChannels, c.inputChannels, 3, 3], using: &random)
      let dy = Tensor(randomNormal: [c.batch, c.outputChannels, c.height, c.width], using: &random)
      let (x64, w64, dy64) = (x.converted(to: .float64), w.converted(to: .float64), dy.converted(to: .float64))
      // Sums of 864 to 900 products of unit normals (about 30 in size) and, for the weight
      // gradient, of up to 16 x 17 x 4 (about 35). F(2x2, 3x3) leaves errors of about 3e-5, F(4x4,
      // 3x3) (the gradients) up to 5e-4 (docs/numerics.md#winograd).
      let context = "seed \(500 + k) \(c)"
      assertClose(conv2d(x, w, padding: 1).converted(to: .float64), conv2d(x64, w64, padding: 1), relativeTolerance: 1e-4, absoluteTolerance: 2e-3, "forward \(context)")
      let dx = conv2dBackwardInput(dy, w, inputShape: x.shape, padding: 1), dw = conv2dBackwardWeight(dy, x, weightShape: w.shape, padding: 1)
      assertClose(
        dx.converted(to: .float64), conv2dBackwardInput(dy64, w64, inputShape: x.shape, padding: 1), relativeTolerance: 1e-4,
        absoluteTolerance: 2e-3, "input gradient \(context)")
      assertClose(
        dw.converted(to: .float64), conv2dBackwardWeight(dy64, x64, weightShape: w.shape, padding: 1), relativeTolerance: 1e-4,
        absoluteTolerance: 2e-3, "weight gradient \(context)")
      // Both at once (chunk by chunk): the same arithmetic, so the same bits.
      XCTAssertTrue(ConvolutionPlan(ConvolutionPlanTests.geometry(c)).sharesGradientWork)
      let both = conv2dBackward(dy, input: x, weight: w, padding: 1)
      assertBitIdentical(both.input, dx, "conv2dBackward input \(context)")
      assertBitIdentical(both.weight, dw, "conv2dBackward weight \(context)")
    }
  }

  /// The forward pass and the input gradient do not depend on the thread count (each chunk of images
  /// is one thread's; 6 images of 16 x 16 make two chunks), and the weight gradient is the same bits run after run at a thread count.
  func testThreadCountAndRepeatability() {
    var random = RandomGenerator(seed: 77)
    let c = Self.layer(batch: 6, 96, 96, 16, 16)
    let x = Tensor(randomNormal: [c.batch, 96, 16, 16], using: &random), w = Tensor(randomNormal: [96, 96, 3, 3], using: &random)
    let dy = Tensor(randomNormal: [c.batch, 96, 16, 16], using: &random)
    let threads = Parallel.threadCount
    defer { Parallel.setThreadCount(threads) }
    Parallel.setThreadCount(1)
    let y1 = conv2d(x, w, padding: 1), dx1 = conv2dBackwardInput(dy, w, inputShape: x.shape, padding: 1)
    Parallel.setThreadCount(2)
    assertBitIdentical(conv2d(x, w, padding: 1), y1, "forward")
    assertBitIdentical(conv2dBackwardInput(dy, w, inputShape: x.shape, padding: 1), dx1, "input gradient")
    let dw = conv2dBackwardWeight(dy, x, weightShape: w.shape, padding: 1)
    assertBitIdentical(conv2dBackwardWeight(dy, x, weightShape: w.shape, padding: 1), dw, "weight gradient")
  }
}
