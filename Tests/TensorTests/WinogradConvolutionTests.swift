import CKernels
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
  /// cut by the border), images in several chunks of unequal size (11 images on 16x16 planes: the
  /// weight gradient's two shares of 5 and 6 images, each in chunks of 1 or 2), planes with 4 tiles
  /// to a row (two tile rows to a vector: 8 wide for F(2x2, 3x3), 13 for F(4x4, 3x3)) and an odd
  /// number of tile rows, rows of 5 and 10 tiles (a vector's last lanes past the row), 8x8 planes
  /// (two images to a vector) in chunks of one, two and three images (whose last pair has one), and
  /// a batch of one image; narrow layers whose products end in every partial block of rows (1 to 5
  /// of 6) and in a partial vector of columns (for the weight gradient, whose columns are the
  /// channels: 9, 10, 12, 15 and 100), and 8 outputs; a weight gradient whose shares shrink (16
  /// images of 32x32 on two threads: four shares a thread, of 3, 3, 1 and 1 images); both gradients
  /// at once equal them apart.
  func testMatchesFloat64() {
    let layers = [
      Self.layer(batch: 4, 96, 100, 16, 17), Self.layer(batch: 3, 100, 64, 9, 8), Self.layer(batch: 1, 64, 96, 8, 11),
      Self.layer(batch: 2, 8, 13, 9, 10), Self.layer(batch: 3, 15, 9, 8, 8), Self.layer(batch: 2, 10, 11, 12, 9),
      Self.layer(batch: 2, 12, 8, 9, 10), Self.layer(batch: 2, 9, 12, 13, 37), Self.layer(batch: 3, 16, 10, 9, 13),
      Self.layer(batch: 9, 12, 16, 8, 8), Self.layer(batch: 12, 8, 9, 8, 8), Self.layer(batch: 11, 16, 16, 16, 16),
      Self.layer(batch: 16, 8, 8, 32, 32),
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

  /// Wide layers with few outputs (here 100 channels to 8) take their channels in blocks, each
  /// block's patches transformed and multiplied before the next's, in the forward pass and the
  /// weight gradient, and their input gradients (8 to 100) compute and deliver the products' rows a
  /// block at a time; with a partial last block, with the pre-activation unit's normalisation and
  /// with plane factors, the results are bit for bit those of one block.
  func testBlocksGiveTheBitsOfOneBlock() {
    let c = Self.layer(batch: 4, 100, 8, 16, 16)
    var random = RandomGenerator(seed: 31)
    let x = Tensor(randomNormal: [4, 100, 16, 16], using: &random), w = Tensor(randomNormal: [8, 100, 3, 3], using: &random)
    let dy = Tensor(randomNormal: [4, 8, 16, 16], using: &random)
    let affine = (scale: (0..<100).map { _ in random.nextUnit(Float.self) + 0.5 }, shift: (0..<100).map { _ in random.nextUnit(Float.self) - 0.5 })
    let planeScale = (0..<400).map { _ in random.nextUnit(Float.self) < 0.25 ? 0 : Float(4.0 / 3) }
    let blocked = WinogradConvolution(ConvolutionPlanTests.geometry(c))
    var whole = blocked
    whole.forwardTiling.blockBytes = .max
    whole.gradientTiling.blockBytes = .max
    for (name, tiling) in [("forward", blocked.forwardTiling), ("gradient", blocked.gradientTiling)] {
      let blocks = Array(tiling.blocks(of: 100, facing: 8))
      XCTAssertGreaterThan(blocks.count, 1, "\(name) blocks")
      XCTAssertNotEqual(100 % blocks[0].count, 0, "\(name) blocks end in a partial one")
      XCTAssertEqual(blocks.last?.upperBound, 100, name)
    }
    XCTAssertEqual(Array(blocked.gradientTiling.blocks(of: 100, facing: 100)), [0..<100], "wide layers take one block")
    planeScale.withUnsafeBufferPointer { planeScale in
      func forward(_ conv: WinogradConvolution, normalizing: Bool, scaling: Bool) -> Tensor {
        let y = Tensor(uninitializedShape: [4, 8, 16, 16], dtype: .float32)
        conv.forward(x, w, into: y, Float.self, normalizing: normalizing ? affine : nil, scalingPlanes: scaling ? planeScale.baseAddress : nil)
        return y
      }
      for (normalizing, scaling) in [(false, false), (true, false), (false, true)] {
        let context = "normalizing \(normalizing), scaling \(scaling)"
        assertBitIdentical(forward(blocked, normalizing: normalizing, scaling: scaling), forward(whole, normalizing: normalizing, scaling: scaling), "forward, \(context)")
      }
      func gradients(_ conv: WinogradConvolution, normalizing: Bool) -> (Tensor, Tensor) {
        let dx = Tensor(uninitializedShape: x.shape, dtype: .float32), dw = Tensor(uninitializedShape: w.shape, dtype: .float32)
        conv.backward(dy, x, w, inputGradient: dx, weightGradient: dw, Float.self, normalizing: normalizing ? affine : nil)
        return (dx, dw)
      }
      for normalizing in [false, true] {
        let (a, b) = (gradients(blocked, normalizing: normalizing), gradients(whole, normalizing: normalizing))
        assertBitIdentical(a.0, b.0, "input gradient, normalizing \(normalizing)")
        assertBitIdentical(a.1, b.1, "weight gradient, normalizing \(normalizing)")
      }
      func scaledGradients(_ conv: WinogradConvolution) -> (Tensor, Tensor) {
        let dx = Tensor(uninitializedShape: x.shape, dtype: .float32), dw = Tensor(uninitializedShape: w.shape, dtype: .float32)
        conv.backward(dy, x, w, scalingPlanes: planeScale.baseAddress!, inputGradient: InputGradientTarget(dx), weightGradient: dw)
        return (dx, dw)
      }
      let (a, b) = (scaledGradients(blocked), scaledGradients(whole))
      assertBitIdentical(a.0, b.0, "input gradient, scaling")
      assertBitIdentical(a.1, b.1, "weight gradient, scaling")
    }
    // And the blocked results are the convolution's: against Float64.
    let y = Tensor(uninitializedShape: [4, 8, 16, 16], dtype: .float32)
    blocked.forward(x, w, into: y, Float.self)
    assertClose(y.converted(to: .float64), conv2d(x.converted(to: .float64), w.converted(to: .float64), padding: 1), relativeTolerance: 1e-4, absoluteTolerance: 2e-3, "forward")
    let dw = Tensor(uninitializedShape: w.shape, dtype: .float32)
    blocked.backwardWeight(dy, x, into: dw, Float.self)
    assertClose(
      dw.converted(to: .float64), conv2dBackwardWeight(dy.converted(to: .float64), x.converted(to: .float64), weightShape: w.shape, padding: 1),
      relativeTolerance: 1e-4, absoluteTolerance: 2e-3, "weight gradient")
  }

  /// Wide layers' forward chunks hold fewer images, so that their transformed data stays in the L2
  /// cache (96 channels to 96 on 16x16 planes: one image, where 4096 values a channel would give
  /// two at this batch), and give the bits of the larger chunks; narrow layers keep theirs; and no
  /// chunk falls under 64 tiles (384 channels to 384 on 8x8 planes: four images).
  func testWideLayersTakeSmallerForwardChunksWithTheSameBits() {
    let wide = ConvolutionPlanTests.geometry(Self.layer(batch: 8, 96, 96, 16, 16))
    let conv = WinogradConvolution(wide)
    var larger = conv
    larger.forwardTiling = WinogradTiling(wide, tile: 2)
    XCTAssertEqual(conv.forwardTiling.imagesPerChunk, 1)
    XCTAssertEqual(larger.forwardTiling.imagesPerChunk, 2)
    let narrow = ConvolutionPlanTests.geometry(Self.layer(batch: 128, 16, 16, 32, 32))
    XCTAssertEqual(WinogradTiling.forward(narrow).imagesPerChunk, WinogradTiling(narrow, tile: 2).imagesPerChunk)
    let widest = ConvolutionPlanTests.geometry(Self.layer(batch: 32, 384, 384, 8, 8))
    XCTAssertEqual(WinogradTiling.forward(widest).imagesPerChunk, 4)
    var random = RandomGenerator(seed: 41)
    let x = Tensor(randomNormal: [8, 96, 16, 16], using: &random), w = Tensor(randomNormal: [96, 96, 3, 3], using: &random)
    func forward(_ c: WinogradConvolution) -> Tensor {
      let y = Tensor(uninitializedShape: [8, 96, 16, 16], dtype: .float32)
      c.forward(x, w, into: y, Float.self)
      return y
    }
    assertBitIdentical(forward(conv), forward(larger), "forward")
  }

  /// The products' AVX-512 version (wider blocks of the same 8-lane sums in 32 registers) adds the
  /// same multiply-adds in the same order, so that the forward pass and both gradients are bit for
  /// bit those of the AVX2 version: F(2x2, 3x3) and F(4x4, 3x3) in rows and in pairs of images,
  /// rows of partial vectors (14 wide), the pre-activation unit's normalisation, and products of 1
  /// to 4 vectors of columns. On a processor without AVX-512 both runs take the AVX2 version.
  func testWideAndNarrowKernelsGiveTheSameBits() {
    var random = RandomGenerator(seed: 37)
    for c in [Self.layer(batch: 3, 8, 16, 8, 8), Self.layer(batch: 2, 16, 40, 14, 14), Self.layer(batch: 2, 40, 12, 12, 12),
      Self.layer(batch: 1, 24, 36, 32, 32)] {
      let conv = WinogradConvolution(ConvolutionPlanTests.geometry(c))
      let x = Tensor(randomNormal: [c.batch, c.inputChannels, c.height, c.width], using: &random)
      let w = Tensor(randomNormal: [c.outputChannels, c.inputChannels, 3, 3], using: &random)
      let dy = Tensor(randomNormal: [c.batch, c.outputChannels, c.height, c.width], using: &random)
      let affine = (
        scale: (0..<c.inputChannels).map { _ in random.nextUnit(Float.self) + 0.5 },
        shift: (0..<c.inputChannels).map { _ in random.nextUnit(Float.self) - 0.5 }
      )
      func run(wide: Bool, normalizing: Bool) -> [Tensor] {
        let y = Tensor(uninitializedShape: dy.shape, dtype: .float32)
        let dx = Tensor(uninitializedShape: x.shape, dtype: .float32), dw = Tensor(uninitializedShape: w.shape, dtype: .float32)
        withWideConvolutionTiles(wide) {
          conv.forward(x, w, into: y, Float.self, normalizing: normalizing ? affine : nil)
          conv.backward(dy, x, w, inputGradient: dx, weightGradient: dw, Float.self, normalizing: normalizing ? affine : nil)
        }
        return [y, dx, dw]
      }
      for normalizing in [false, true] {
        let (narrow, wide) = (run(wide: false, normalizing: normalizing), run(wide: true, normalizing: normalizing))
        for (name, (a, b)) in zip(["forward", "input gradient", "weight gradient"], zip(narrow, wide)) {
          assertBitIdentical(a, b, "\(name), \(c), normalizing \(normalizing)")
        }
      }
    }
  }

  /// The P matrices of a chunk's transformed data lie an odd number of cache lines apart, just past
  /// their rows x tiles, so that the 16 or 36 vectors a transform writes at a time (one per matrix)
  /// fall into as many different sets of a 64-set L1 cache, whatever the number of rows.
  func testTransformedMatricesFallIntoDifferentCacheSets() {
    for rows in [1, 8, 12, 16, 32, 64, 100, 128, 384] {
      for tileCount in [24, 72, 120, 264] {
        let stream = reprise_winograd_stream(rows, tileCount), lines = stream / 16
        XCTAssertEqual(stream % 16, 0, "\(rows) x \(tileCount)")
        XCTAssertTrue((rows * tileCount)..<(rows * tileCount + 32) ~= stream, "\(rows) x \(tileCount): \(stream)")
        XCTAssertEqual(Set((0..<36).map { $0 * lines % 64 }).count, 36, "\(rows) x \(tileCount): \(stream)")
      }
    }
  }

  /// Layers whose transformed sums pass 4 MB split their gradients within each chunk, by position
  /// and by blocks of channels (ShakeNet's 192 channels on 16x16 planes and 384 on 8x8; not its 96
  /// on 32x32). Each sum runs over the tiles in order either way, so that, on one thread and on two,
  /// plain, normalised and with plane factors, both gradients are bit for bit those of one share
  /// (the path by images on one thread) where the 8x8 planes' mosaics pair the same images, the same
  /// on two threads as on one, and the weight gradient is the Float64 one's. Small layers forced to
  /// split take two chunks of the shared sums each: 5 images of 13x13 (2 and 3; 24 channels in two
  /// blocks of 12), 24 of 8x8 (12 and 12, where one share takes 4 chunks of 6; 16 channels in blocks
  /// of 12 and 4), and 17 of 8x8 (8 and 9, its last mosaic with one image).
  func testWideLayersSplitTheGradientsByPosition() {
    func conv(_ c: Configuration) -> WinogradConvolution { WinogradConvolution(ConvolutionPlanTests.geometry(c)) }
    XCTAssertTrue(conv(Self.layer(batch: 32, 384, 384, 8, 8)).splitsGradientsByPosition)
    XCTAssertTrue(conv(Self.layer(batch: 32, 192, 192, 16, 16)).splitsGradientsByPosition)
    XCTAssertFalse(conv(Self.layer(batch: 32, 96, 96, 32, 32)).splitsGradientsByPosition)
    let threads = Parallel.threadCount
    defer { Parallel.setThreadCount(threads) }
    for (k, c) in [Self.layer(batch: 5, 24, 16, 13, 13), Self.layer(batch: 24, 16, 24, 8, 8), Self.layer(batch: 17, 8, 16, 8, 8)].enumerated() {
      var random = RandomGenerator(seed: UInt64(41 + k))
      let (n, ci, co, h, wd) = (c.batch, c.inputChannels, c.outputChannels, c.height, c.width)
      let x = Tensor(randomNormal: [n, ci, h, wd], using: &random), w = Tensor(randomNormal: [co, ci, 3, 3], using: &random)
      let dy = Tensor(randomNormal: [n, co, h, wd], using: &random)
      let affine = (scale: (0..<ci).map { _ in random.nextUnit(Float.self) + 0.5 }, shift: (0..<ci).map { _ in random.nextUnit(Float.self) - 0.5 })
      let planeScale = (0..<n * ci).map { _ in random.nextUnit(Float.self) < 0.25 ? 0 : Float(4.0 / 3) }
      let byImages = conv(c)
      var split = byImages
      split.splitsGradientsByPosition = true
      XCTAssertEqual(WinogradTiling(split.g, tile: 4, minimumChunks: 1, valuesPerChannel: 36 * 64).chunks(n), 2, "seed \(41 + k)")
      planeScale.withUnsafeBufferPointer { planeScale in
        func gradients(_ conv: WinogradConvolution, normalizing: Bool, scaling: Bool) -> (Tensor, Tensor) {
          let dx = Tensor(uninitializedShape: x.shape, dtype: .float32), dw = Tensor(uninitializedShape: w.shape, dtype: .float32)
          if scaling {
            conv.backward(dy, x, w, scalingPlanes: planeScale.baseAddress!, inputGradient: InputGradientTarget(dx), weightGradient: dw)
          } else {
            conv.backward(dy, x, w, inputGradient: dx, weightGradient: dw, Float.self, normalizing: normalizing ? affine : nil)
          }
          return (dx, dw)
        }
        for (normalizing, scaling) in [(false, false), (true, false), (false, true)] {
          let context = "seed \(41 + k) \(c), normalizing \(normalizing), scaling \(scaling)"
          Parallel.setThreadCount(1)
          let one = gradients(split, normalizing: normalizing, scaling: scaling)
          if k < 2 {
            let expected = gradients(byImages, normalizing: normalizing, scaling: scaling)
            assertBitIdentical(one.0, expected.0, "input gradient, one share, \(context)")
            assertBitIdentical(one.1, expected.1, "weight gradient, one share, \(context)")
          }
          Parallel.setThreadCount(2)
          let two = gradients(split, normalizing: normalizing, scaling: scaling)
          assertBitIdentical(two.0, one.0, "input gradient, two threads, \(context)")
          assertBitIdentical(two.1, one.1, "weight gradient, two threads, \(context)")
        }
      }
      let dw = Tensor(uninitializedShape: w.shape, dtype: .float32)
      split.backwardWeight(dy, x, into: dw, Float.self)
      assertClose(
        dw.converted(to: .float64), conv2dBackwardWeight(dy.converted(to: .float64), x.converted(to: .float64), weightShape: w.shape, padding: 1),
        relativeTolerance: 1e-4, absoluteTolerance: 2e-3, "weight gradient, seed \(41 + k) \(c)")
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
