import CKernels

/// Depthwise convolutions in Float32 on processors with AVX2 and FMA through the C kernels of
/// `DepthwiseLanes.c`, which hold 8 channels of one image in the lanes of a vector: the forward pass
/// and input gradient of small planes, and every weight gradient.
///
/// The plane kernels (DepthwiseConvolution+Planes.swift) vectorise along rows, and a plane is a call
/// with its own grid: planes of 4x4 and 2x2 (MobileNetV2's last stages on CIFAR) fill half or a
/// quarter of a vector per row and spend more on each plane's set-up than on its 16 or 4 outputs.
/// Here a group of 8 channels of an image is transposed into an interleaved zero-padded grid and
/// every tap is one whole vector, whatever the stride; the forward pass and the input gradient give
/// the plane kernels' bits. For the weight gradient the lanes are channels, so a tap's sum needs no
/// adding across lanes and each position is loaded once for all 9 taps of a 3x3 kernel. Channels
/// run in groups of 8, the last one with fewer lanes.
extension DepthwiseConvolution {
  /// The largest output plane whose forward pass and input gradient take the lane kernels. On larger
  /// planes both kernels ran at the same speed, and the plane kernels keep a plane's grid, not 8
  /// planes' (docs/performance.md).
  static let largestLanePlane = 64

  /// Whether the lane kernels compute the forward pass and input gradient for scalars of type `T`
  /// (the weight gradient takes them wherever ``usesPlaneKernels(_:)``).
  func usesChannelLanes<T: TensorScalar>(_: T.Type) -> Bool {
    usesPlaneKernels(T.self) && g.outputPlane <= Self.largestLanePlane
  }

  private var groupCount: Int { (g.inputChannels + 7) / 8 }

  /// Whether the input gradient is the forward kernel's correlation of the output gradient with the
  /// taps in reverse order (stride 1, padding within the kernel's reach), rather than the output
  /// gradient spread through the taps: each vector is then loaded per tap instead of loaded and
  /// stored back, the same sums in the same order.
  private var correlatesInputGradient: Bool {
    g.stride.height == 1 && g.stride.width == 1 && g.padding.height <= (g.kernelHeight - 1) * g.dilation.height
      && g.padding.width <= (g.kernelWidth - 1) * g.dilation.width
  }

  /// Runs `body` with the lane kernels' geometry: the forward pass's, or, `reversed`, that of the
  /// input gradient's correlation (see `correlatesInputGradient`), whose input is the output gradient
  /// placed the kernel's reach less the padding from the grid's top and left.
  private func withLaneGeometry<R>(reversed: Bool = false, _ body: (UnsafePointer<RepriseLaneGeometry>) -> R) -> R {
    let (kh, kw, dh, dw) = (g.kernelHeight, g.kernelWidth, g.dilation.height, g.dilation.width)
    let (h, w, oh, ow, top, left) =
      reversed
      ? (g.outputHeight, g.outputWidth, g.height, g.width, (kh - 1) * dh - g.padding.height, (kw - 1) * dw - g.padding.width)
      : (g.height, g.width, g.outputHeight, g.outputWidth, g.padding.height, g.padding.width)
    let (sh, sw) = reversed ? (1, 1) : (g.stride.height, g.stride.width)
    // Room for every position an output reads and for the whole input.
    let rows = max((oh - 1) * sh + (kh - 1) * dh + 1, top + h), pitch = max((ow - 1) * sw + (kw - 1) * dw + 1, left + w)
    let index = (0..<h * w).map { ($0 / w + top) * pitch + $0 % w + left }
    let offsets = (0..<kh * kw).map { $0 / kw * dh * pitch + $0 % kw * dw }
    return index.withUnsafeBufferPointer { index in
      offsets.withUnsafeBufferPointer { offsets in
        var geometry = RepriseLaneGeometry(
          height: h, width: w, outputHeight: oh, outputWidth: ow, strideHeight: sh, strideWidth: sw, pitch: pitch,
          gridCount: rows * pitch, taps: offsets.count, inputIndex: index.baseAddress, offsets: offsets.baseAddress)
        return body(&geometry)
      }
    }
  }

  /// The weights [groups][taps][8]: channel 8 k + l's tap t at (k · taps + t) · 8 + l (`reversed`:
  /// its tap taps - 1 - t), zero past the last channel.
  private func laneWeights(_ w: Tensor, reversed: Bool = false) -> [Float] {
    let pw = w.base(Float.self)
    var lanes = [Float](repeating: 0, count: groupCount * taps * 8)
    for c in 0..<g.inputChannels {
      for t in 0..<taps { lanes[(c / 8 * taps + t) * 8 + c % 8] = pw[c * taps + (reversed ? taps - 1 - t : t)] }
    }
    withExtendedLifetime(w) {}
    return lanes
  }

  /// Runs `body(group, firstImage, images, grid, buffer)` for every (group of 8 channels, image),
  /// the images of a group in runs, split between the threads, each with its own buffers.
  private func forEachGroupRun(
    _ geometry: UnsafePointer<RepriseLaneGeometry>,
    _ body: (_ group: Int, _ first: Int, _ images: Int, _ grid: UnsafeMutablePointer<Float>, _ buffer: UnsafeMutablePointer<Float>) -> Void
  ) {
    let gridCount = 8 * geometry.pointee.gridCount, bufferCount = 8 * geometry.pointee.outputHeight * geometry.pointee.outputWidth
    Parallel.forRanges(groupCount * g.batch, costPerItem: 8 * g.outputPlane * taps) { items in
      let grid = UnsafeMutablePointer<Float>.allocate(capacity: gridCount)
      let buffer = UnsafeMutablePointer<Float>.allocate(capacity: bufferCount)
      defer { grid.deallocate(); buffer.deallocate() }
      var item = items.lowerBound
      while item < items.upperBound {
        let (group, first) = (item / g.batch, item % g.batch), images = min(items.upperBound - item, g.batch - first)
        body(group, first, images, grid, buffer)
        item += images
      }
    }
  }

  func forwardByLanes(_ x: Tensor, _ w: Tensor, into y: Tensor) {
    let xl = PlaneLayout(x), yl = PlaneLayout(y), px = x.base(Float.self), py = y.base(Float.self)
    let weights = laneWeights(w)
    weights.withUnsafeBufferPointer { weights in
      withLaneGeometry { geometry in
        forEachGroupRun(geometry) { group, first, images, grid, buffer in
          let c = 8 * group
          reprise_depthwise_lanes_forward_f32(
            geometry, weights.baseAddress! + group * taps * 8, px + first * xl.imageStride + c * xl.channelStride,
            xl.channelStride, xl.imageStride, py + first * yl.imageStride + c * yl.channelStride, yl.channelStride,
            yl.imageStride, min(8, g.inputChannels - c), images, grid, buffer)
        }
      }
    }
    withExtendedLifetime((x, y)) {}
  }

  func backwardInputByLanes(_ dy: Tensor, _ w: Tensor, into dx: Tensor) {
    let dyl = PlaneLayout(dy), dxl = PlaneLayout(dx), pdy = dy.base(Float.self), pdx = dx.base(Float.self)
    let correlates = correlatesInputGradient
    let weights = laneWeights(w, reversed: correlates)
    weights.withUnsafeBufferPointer { weights in
      withLaneGeometry(reversed: correlates) { geometry in
        forEachGroupRun(geometry) { group, first, images, grid, buffer in
          let c = 8 * group, lanes = min(8, g.inputChannels - c), w = weights.baseAddress! + group * taps * 8
          let source = pdy + first * dyl.imageStride + c * dyl.channelStride
          let target = pdx + first * dxl.imageStride + c * dxl.channelStride
          if correlates {
            reprise_depthwise_lanes_forward_f32(
              geometry, w, source, dyl.channelStride, dyl.imageStride, target, dxl.channelStride, dxl.imageStride, lanes,
              images, grid, buffer)
          } else {
            reprise_depthwise_lanes_input_gradient_f32(
              geometry, w, source, dyl.channelStride, dyl.imageStride, target, dxl.channelStride, dxl.imageStride, lanes,
              images, grid, buffer)
          }
        }
      }
    }
    withExtendedLifetime((dy, dx)) {}
  }

  /// Each group's sums run over all the images on one thread, in image order, so the result does
  /// not depend on the thread count.
  func backwardWeightByLanes(_ dy: Tensor, _ x: Tensor, into dw: Tensor) {
    let dyl = PlaneLayout(dy), xl = PlaneLayout(x), pdy = dy.base(Float.self), px = x.base(Float.self)
    let pdw = dw.base(Float.self)
    withLaneGeometry { geometry in
      let gridCount = 8 * geometry.pointee.gridCount, bufferCount = 8 * g.outputPlane
      Parallel.forRanges(groupCount, costPerItem: 8 * g.batch * g.outputPlane * taps) { groups in
        let grid = UnsafeMutablePointer<Float>.allocate(capacity: gridCount)
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: bufferCount)
        let sums = UnsafeMutablePointer<Double>.allocate(capacity: 8 * taps)
        defer { grid.deallocate(); buffer.deallocate(); sums.deallocate() }
        for group in groups {
          let c = 8 * group, lanes = min(8, g.inputChannels - c)
          sums.update(repeating: 0, count: 8 * taps)
          reprise_depthwise_lanes_weight_gradient_f32(
            geometry, pdy + c * dyl.channelStride, dyl.channelStride, dyl.imageStride, px + c * xl.channelStride,
            xl.channelStride, xl.imageStride, lanes, g.batch, sums, grid, buffer)
          for l in 0..<lanes {
            for t in 0..<taps { pdw[(c + l) * taps + t] = Float(sums[8 * t + l]) }
          }
        }
      }
    }
    withExtendedLifetime((dy, x, dw)) {}
  }
}
