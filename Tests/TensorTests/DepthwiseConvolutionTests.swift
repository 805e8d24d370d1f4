@testable import TensorModule
import TestSupport
import XCTest

/// The two sets of Float32 AVX2 kernels of depthwise convolutions: along the rows of a plane and
/// across 8 channels. ConvolutionTests checks the one each geometry takes against the reference loops.
final class DepthwiseConvolutionTests: XCTestCase {
  /// On every depthwise configuration of ConvolutionTests, the lane kernels' forward pass and input
  /// gradient equal the plane kernels' bit for bit (the same sums in the same order), so which one a
  /// plane size takes changes no result.
  func testLaneAndPlaneKernelsGiveTheSameBits() throws {
    for (k, c) in ConvolutionTests.depthwiseConfigurations.enumerated() {
      let d = DepthwiseConvolution(g: ConvolutionPlanTests.geometry(c))
      try XCTSkipUnless(d.usesPlaneKernels(Float.self), "this processor has no AVX2: neither kernel runs")
      var random = RandomGenerator(seed: UInt64(30 + k))
      let x = Tensor(randomNormal: [c.batch, c.inputChannels, c.height, c.width], using: &random)
      let w = Tensor(randomNormal: [c.outputChannels, 1, c.kernelHeight, c.kernelWidth], using: &random)
      let outputShape = [c.batch, c.outputChannels, d.g.outputHeight, d.g.outputWidth]
      let dy = Tensor(randomNormal: outputShape, using: &random)
      let (yLanes, yPlanes) = (Tensor(uninitializedShape: outputShape, dtype: .float32), Tensor(uninitializedShape: outputShape, dtype: .float32))
      d.forwardByLanes(x, w, into: yLanes)
      d.forwardByPlanes(x, w, into: yPlanes)
      XCTAssertEqual(yLanes.scalars(), yPlanes.scalars(), "forward, seed \(30 + k) \(c)")
      let (dxLanes, dxPlanes) = (Tensor(uninitializedShape: x.shape, dtype: .float32), Tensor(uninitializedShape: x.shape, dtype: .float32))
      d.backwardInputByLanes(dy, w, into: dxLanes)
      d.backwardInputByPlanes(dy, w, into: dxPlanes)
      XCTAssertEqual(dxLanes.scalars(), dxPlanes.scalars(), "input gradient, seed \(30 + k) \(c)")
    }
  }
}
