@testable import TensorModule
import TestSupport
import XCTest

/// The convolution plan: which method each geometry takes, and that each method's three operations
/// (forward, input gradient, weight gradient) agree with the reference loops.
final class ConvolutionPlanTests: XCTestCase {
  typealias Configuration = ConvolutionTests.Configuration

  /// One configuration per method, named by the method it must take.
  static let cases: [(method: String, configuration: Configuration)] = [
    ("empty", Configuration(batch: 2, inputChannels: 0, outputChannels: 3, height: 4, width: 4, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, dilation: 1, groups: 1)),
    ("depthwise", Configuration(batch: 2, inputChannels: 4, outputChannels: 4, height: 6, width: 5, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1, dilation: 1, groups: 4)),
    // Float32 takes the AVX2 plane kernels at every stride: whole tiles (rows of 16), dilation, and a
    // padding beyond the kernel's reach.
    ("depthwise", Configuration(batch: 2, inputChannels: 3, outputChannels: 3, height: 9, width: 16, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, dilation: 1, groups: 3)),
    ("depthwise", Configuration(batch: 2, inputChannels: 2, outputChannels: 2, height: 7, width: 11, kernelHeight: 3, kernelWidth: 5, stride: 1, padding: [2, 3], dilation: [2, 1], groups: 2)),
    ("depthwise", Configuration(batch: 1, inputChannels: 2, outputChannels: 2, height: 5, width: 6, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 3, dilation: 1, groups: 2)),
    ("shiftedGrid", Configuration(batch: 2, inputChannels: 5, outputChannels: 6, height: 6, width: 7, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, dilation: 1, groups: 1)),
    // 64 outputs (ResNet-20's last stage): the shifted grid with its direct weight gradient; 96
    // (ShakeNet's narrowest): the weight gradient through im2col.
    ("shiftedGrid", Configuration(batch: 1, inputChannels: 4, outputChannels: 64, height: 4, width: 3, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, dilation: 1, groups: 1)),
    ("shiftedGrid", Configuration(batch: 1, inputChannels: 4, outputChannels: 96, height: 4, width: 3, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, dilation: 1, groups: 1)),
    // Strided with enough channels: the phase grids up to 64 outputs (Float64 runs im2col for them),
    // im2col above.
    ("phaseGrid", Configuration(batch: 2, inputChannels: 4, outputChannels: 6, height: 7, width: 6, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1, dilation: 1, groups: 1)),
    ("phaseGrid", Configuration(batch: 1, inputChannels: 4, outputChannels: 64, height: 5, width: 4, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1, dilation: 1, groups: 1)),
    ("im2col", Configuration(batch: 1, inputChannels: 4, outputChannels: 96, height: 5, width: 4, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1, dilation: 1, groups: 1)),
    ("pointwise", Configuration(batch: 3, inputChannels: 4, outputChannels: 6, height: 5, width: 4, kernelHeight: 1, kernelWidth: 1, stride: 1, padding: 0, dilation: 1, groups: 2)),
    // Pixels enough for Float32's input gradient through the register kernel (blocks of 128
    // columns; 243 and 162 of them), ungrouped and grouped.
    ("pointwise", Configuration(batch: 3, inputChannels: 13, outputChannels: 7, height: 9, width: 9, kernelHeight: 1, kernelWidth: 1, stride: 1, padding: 0, dilation: 1, groups: 1)),
    ("pointwise", Configuration(batch: 2, inputChannels: 6, outputChannels: 8, height: 9, width: 9, kernelHeight: 1, kernelWidth: 1, stride: 1, padding: 0, dilation: 1, groups: 2)),
    ("im2col", Configuration(batch: 2, inputChannels: 3, outputChannels: 5, height: 7, width: 6, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1, dilation: 1, groups: 1)),
    // From 2 ungrouped input channels (an RGB stem's 3) the shifted grid, for any kernel; 1 channel
    // takes im2col.
    ("shiftedGrid", Configuration(batch: 2, inputChannels: 3, outputChannels: 5, height: 7, width: 6, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, dilation: 1, groups: 1)),
    ("shiftedGrid", Configuration(batch: 2, inputChannels: 2, outputChannels: 4, height: 6, width: 6, kernelHeight: 5, kernelWidth: 5, stride: 1, padding: 2, dilation: 1, groups: 1)),
    ("im2col", Configuration(batch: 2, inputChannels: 1, outputChannels: 4, height: 6, width: 6, kernelHeight: 5, kernelWidth: 5, stride: 1, padding: 2, dilation: 1, groups: 1)),
  ]

  func testEachGeometryTakesItsMethod() {
    for (expected, c) in Self.cases {
      XCTAssertEqual(Self.methodName(ConvolutionPlan(Self.geometry(c)).method), expected, "\(c)")
    }
  }

  /// Every method's forward pass and both gradients, apart and together, equal the reference loops,
  /// with an image-major input (so the pointwise method reads a channel-major copy) in Float32 and
  /// Float64.
  func testEveryMethodMatchesReferenceLoops() {
    let configurations = Self.cases.map(\.configuration)
    ConvolutionTests.checkAgainstReference(configurations, dtype: .float32, tolerance: 1e-5)
    ConvolutionTests.checkAgainstReference(configurations, dtype: .float64, tolerance: 1e-10)
  }

  /// Float32's pointwise input gradient through the register kernel splits the pixels into pieces
  /// claimed by the threads, and each sum runs over the layer's outputs in order whatever the split:
  /// the same bits on 1, 2 and 3 threads, for pixels that split into blocks unevenly (2 x 21 x 23,
  /// three pieces), and the Float64 gradient to Float32's rounding.
  func testPointwiseInputGradientDoesNotDependOnTheThreads() {
    let threads = Parallel.threadCount
    defer { Parallel.setThreadCount(threads) }
    var random = RandomGenerator(seed: 47)
    let x = Tensor(randomNormal: [2, 30, 21, 23], using: &random), w = Tensor(randomNormal: [20, 30, 1, 1], using: &random)
    let dy = Tensor(randomNormal: [2, 20, 21, 23], using: &random)
    let gradients = [1, 2, 3].map { count in
      Parallel.setThreadCount(count)
      return conv2dBackward(dy, input: x, weight: w).input.scalars()
    }
    XCTAssertEqual(gradients[0], gradients[1], "1 and 2 threads")
    XCTAssertEqual(gradients[0], gradients[2], "1 and 3 threads")
    let reference = conv2dBackward(dy.converted(to: .float64), input: x.converted(to: .float64), weight: w.converted(to: .float64)).input
    assertClose(Tensor(gradients[0], shape: x.shape).converted(to: .float64), reference, relativeTolerance: 1e-5, absoluteTolerance: 1e-5)
  }

  /// The AVX-512 tiles of the direct kernels (shifted and phase grids) agree with the AVX2 tiles: the forward
  /// pass and the input gradient bit for bit (the same sums in the same order), the weight gradient
  /// to rounding (its lanes are summed in another order). With ConvolutionTests, which checks the
  /// tiles the processor runs against the reference loops, this covers both tiles on a processor
  /// that has AVX-512. Float32, where the direct kernels run.
  func testWideAndNarrowTilesAgree() {
    var random = RandomGenerator(seed: 41)
    // Rows of 8 (each vector's halves on two rows; 21 rows leave the last vector's upper half
    // empty) and of 16 and 32 (each vector on one row); rows of 13 in pieces of 8 and 5, 66 of
    // them, so that a block of 64 vectors ends inside the rows; a 7x7 kernel on 8x8 planes.
    let rows = [(8, 8, 3), (7, 8, 3), (5, 16, 3), (3, 32, 3), (22, 13, 3), (8, 8, 7)].map { h, w, k in
      Configuration(
        batch: 3, inputChannels: 6, outputChannels: 13, height: h, width: w, kernelHeight: k, kernelWidth: k, stride: 1,
        padding: IntOrPair(k / 2), dilation: 1, groups: 1)
    }
    for c in ConvolutionTests.shiftedConfigurations + ConvolutionTests.stridedConfigurations + rows {
      let x = Tensor(randomNormal: [c.batch, c.inputChannels, c.height, c.width], using: &random)
      let w = Tensor(randomNormal: [c.outputChannels, c.inputChannels / c.groups, c.kernelHeight, c.kernelWidth], using: &random)
      func run() -> (Tensor, Tensor, Tensor) {
        let y = conv2d(x, w, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups)
        let dy = Tensor(randomNormal: y.shape, using: &random)
        let d = conv2dBackward(dy, input: x, weight: w, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups)
        return (y, d.input, d.weight)
      }
      let seed = random
      var narrow: (Tensor, Tensor, Tensor)!, wide: (Tensor, Tensor, Tensor)!
      withWideConvolutionTiles(false) { narrow = run() }
      random = seed
      withWideConvolutionTiles(true) { wide = run() }
      XCTAssertEqual(narrow.0.scalars(), wide.0.scalars(), "forward \(c)")
      XCTAssertEqual(narrow.1.scalars(), wide.1.scalars(), "input gradient \(c)")
      assertClose(narrow.2, wide.2, relativeTolerance: 1e-5, absoluteTolerance: 1e-5, "weight gradient \(c)")
    }
  }

  /// The direct kernels run in chunks of images, each thread with its own grids, and add the
  /// chunks' weight gradients: with 1, 2 and 3 threads a batch of 9 falls into 3 chunks of 3, 6
  /// chunks of 1 or 2, and 9 of 1. The forward pass and both gradients of the shifted and the
  /// phase grids match Float64, which runs matrix products over the whole batch (checked against
  /// the reference loops in testEveryMethodMatchesReferenceLoops).
  func testDirectKernelsInChunksOfImagesMatchTheWholeBatch() {
    let threads = Parallel.threadCount
    defer { Parallel.setThreadCount(threads) }
    var random = RandomGenerator(seed: 43)
    let layers = [
      ("shiftedGrid", 3, 1, 6, 7, 2), ("shiftedGrid", 5, 1, 4, 9, 0), ("shiftedGrid", 7, 1, 5, 16, 3),
      ("phaseGrid", 3, 2, 5, 9, 1), ("phaseGrid", 1, 2, 4, 8, 0),
    ]
    for (method, k, s, c, w, p) in layers {
      let (stride, padding) = (IntOrPair(s), IntOrPair(p))
      let x = Tensor(randomNormal: [9, c, 5, w], dtype: .float64, using: &random)
      let weight = Tensor(randomNormal: [6, c, k, k], dtype: .float64, using: &random)
      let y = conv2d(x, weight, stride: stride, padding: padding)
      let dy = Tensor(randomNormal: y.shape, dtype: .float64, using: &random)
      let expected = conv2dBackward(dy, input: x, weight: weight, stride: stride, padding: padding)
      let (x32, w32, dy32) = (x.converted(to: .float32), weight.converted(to: .float32), dy.converted(to: .float32))
      let geometry = Self.geometry(Configuration(
        batch: 9, inputChannels: c, outputChannels: 6, height: 5, width: w, kernelHeight: k, kernelWidth: k, stride: stride,
        padding: padding, dilation: 1, groups: 1))
      for count in 1...3 {
        Parallel.setThreadCount(count)
        let context = "\(method), \(k)x\(k) kernel, stride \(s), \(c) channels, 5 x \(w), \(count) threads"
        XCTAssertEqual(Self.methodName(ConvolutionPlan(geometry).method), method, context)
        let d = conv2dBackward(dy32, input: x32, weight: w32, stride: stride, padding: padding)
        let tolerance = (relativeTolerance: 1e-5, absoluteTolerance: 1e-4)
        assertClose(conv2d(x32, w32, stride: stride, padding: padding), y.converted(to: .float32), relativeTolerance: tolerance.0, absoluteTolerance: tolerance.1, "forward, \(context)")
        assertClose(d.input, expected.input.converted(to: .float32), relativeTolerance: tolerance.0, absoluteTolerance: tolerance.1, "input gradient, \(context)")
        assertClose(d.weight, expected.weight.converted(to: .float32), relativeTolerance: tolerance.0, absoluteTolerance: tolerance.1, "weight gradient, \(context)")
      }
    }
  }

  /// The direct kernels' chunks of images: a multiple of the thread count (so that no thread is
  /// left with one more chunk than the other), four a thread at least, at most about 256 KiB of grid
  /// (64k floats) each, and never more chunks than images.
  func testImageChunksAreSharedEvenly() {
    for (batch, imageElements, threads, expected) in [
      (128, 21 * 14 * 14, 2, 10), (128, 5 * 38 * 38, 2, 16), (128, 21 * 12 * 12, 2, 8), (128, 10, 2, 8), (9, 100, 2, 6),
      (3, 100, 2, 3), (1, 100, 4, 1), (64, 1 << 20, 3, 64), (128, 21 * 14 * 14, 1, 9),
    ] {
      let chunks = DirectConvolution.imageChunks(batch: batch, imageElements: imageElements, threads: threads)
      let context = "batch \(batch), \(imageElements) elements an image, \(threads) threads"
      XCTAssertEqual(chunks, expected, context)
      XCTAssertTrue(chunks % threads == 0 || chunks == batch, context)
      XCTAssertLessThanOrEqual((batch + chunks - 1) / chunks * imageElements, max(imageElements, 1 << 16), context)
    }
  }

  /// The direct kernel skips the kernel rows that read only the grid's zero margins, the padding
  /// above and below an image: with a 7x7 kernel and padding 3 on planes of 8 rows, output row 0
  /// reads kernel rows 3 to 6 and row 7 rows 0 to 3, and in the input gradient input row 0 gets
  /// from kernel rows 0 to 3 and row 7 from 3 to 6; likewise with padding 4 (10 output rows). With
  /// and without skipping, the forward pass gives the same bits; skipping a row that reads the
  /// image does not, on the AVX2 tiles and on the AVX-512 ones. A tile runs the taps of all its
  /// segments: one output row's for the AVX2 tiles (two segments of up to 8 positions, the 11 of a
  /// row here), four rows' for the AVX-512 tiles (eight segments, wherever the rows a thread takes
  /// begin), so a cut in one row's range shows only on the first, a cut in every row's on both.
  func testDirectKernelSkipsKernelRowsOnThePadding() {
    func configuration(padding: Int) -> Configuration {
      Configuration(
        batch: 3, inputChannels: 5, outputChannels: 7, height: 8, width: 11, kernelHeight: 7, kernelWidth: 7, stride: 1,
        padding: IntOrPair(padding), dilation: 1, groups: 1)
    }
    let g = Self.geometry(configuration(padding: 3)), grid = ShiftedGrid(g)
    XCTAssertEqual(grid.forwardTapRanges.count, 16)
    XCTAssertEqual(Array(grid.forwardTapRanges[0..<2]), [21, 49])
    XCTAssertEqual(Array(grid.forwardTapRanges[6..<8]), [0, 49])
    XCTAssertEqual(Array(grid.forwardTapRanges[12..<14]), [0, 35])
    XCTAssertEqual(Array(grid.forwardTapRanges[14..<16]), [0, 28])
    XCTAssertEqual(Array(grid.inputGradientTapRanges[0..<2]), [0, 28])  // input row 0 gets from output rows 3 to 0
    XCTAssertEqual(Array(grid.inputGradientTapRanges[14..<16]), [21, 49])
    let wider = ShiftedGrid(Self.geometry(configuration(padding: 4)))
    XCTAssertEqual(wider.forwardTapRanges.count, 20)
    XCTAssertEqual(Array(wider.forwardTapRanges[0..<2]), [28, 49])
    XCTAssertEqual(Array(wider.inputGradientTapRanges[0..<2]), [0, 35])

    guard usesVectorKernels(Float.self) else { return }
    var random = RandomGenerator(seed: 47)
    let x = Tensor(randomNormal: [3, 5, 8, 11], using: &random), w = Tensor(randomNormal: [7, 5, 7, 7], using: &random)
    let padded = grid.padded(x, Float.self)
    func forward(_ ranges: [Int]?) -> Tensor {
      let y = Tensor(uninitializedShape: g.outputShape, dtype: .float32, strides: PlaneLayout.channelMajorStrides(g.outputShape))
      DirectConvolution.forward(
        g, grid: padded, channelLength: grid.length, offsets: grid.offsets, tapRanges: ranges, pitch: grid.pitch, weight: w, into: y)
      return y
    }
    var rowThree = grid.forwardTapRanges, everyRow = grid.forwardTapRanges
    rowThree[7] -= 7  // output row 3 without kernel row 6, which reads image row 6
    // Every output row that reads kernel row 6 (the last 7 taps: rows 0 to 4) without it.
    let reading = (0..<8).filter { everyRow[2 * $0 + 1] == 49 }
    XCTAssertEqual(reading, [0, 1, 2, 3, 4])
    for y in reading { everyRow[2 * y + 1] -= 7 }
    for wide in [false, true] {
      withWideConvolutionTiles(wide) {
        let full = forward(nil)
        assertBitIdentical(forward(grid.forwardTapRanges), full)
        XCTAssertNotEqual(forward(everyRow).scalars(as: Float.self), full.scalars(as: Float.self), "wide tiles: \(wide)")
        if !wide { XCTAssertNotEqual(forward(rowThree).scalars(as: Float.self), full.scalars(as: Float.self)) }
      }
    }
  }

  /// Ungrouped shifted-grid convolutions with more than 64 outputs take their weight gradient
  /// through im2col; narrower or grouped ones, and other methods, do not.
  func testWideLayersTakeTheirWeightGradientThroughColumns() {
    for (method, c) in Self.cases {
      let expected = method == "shiftedGrid" && c.outputChannels > 64 && c.groups == 1
      XCTAssertEqual(ConvolutionPlan(Self.geometry(c)).weightGradientByColumns, expected, "\(c)")
    }
  }

  /// Only the shifted grid with few outputs per group computes both gradients together (and
  /// Winograd, in WinogradConvolutionTests).
  func testGradientsShareWorkOnlyOnTheShiftedGridWithFewOutputs() {
    let narrow = Self.geometry(Self.cases[5].configuration)
    var wide = Self.cases[5].configuration
    (wide.inputChannels, wide.outputChannels) = (40, 40)
    XCTAssertTrue(ConvolutionPlan(narrow).sharesGradientWork)
    XCTAssertFalse(ConvolutionPlan(Self.geometry(wide)).sharesGradientWork)
    for (method, c) in Self.cases where method != "shiftedGrid" && (c.kernelHeight != 3 || c.stride != 1) {
      XCTAssertFalse(ConvolutionPlan(Self.geometry(c)).sharesGradientWork, "\(c)")
    }
  }

  static func geometry(_ c: Configuration) -> ConvolutionGeometry {
    ConvolutionGeometry(
      "test", input: [c.batch, c.inputChannels, c.height, c.width],
      weight: [c.outputChannels, c.inputChannels / max(1, c.groups), c.kernelHeight, c.kernelWidth], stride: c.stride,
      padding: c.padding, dilation: c.dilation, groups: c.groups)
  }

  static func methodName(_ method: ConvolutionPlan.Method) -> String {
    switch method {
    case .empty: "empty"
    case .depthwise: "depthwise"
    case .winograd: "winograd"
    case .shiftedGrid: "shiftedGrid"
    case .phaseGrid: "phaseGrid"
    case .pointwise: "pointwise"
    case .im2col: "im2col"
    }
  }
}
