/// Max and average pooling over H x W windows of [N, C, H, W] tensors, and their gradients.
///
/// Pooling keeps the input's plane layout (channel-major stays channel-major). Work is split by
/// plane, so every output and gradient element is written by one thread.

/// The geometry of a pooling window: a depthwise convolution with one kernel per channel.
private func poolingGeometry(
  _ operation: String, _ shape: [Int], _ kernelSize: IntOrPair, _ stride: IntOrPair?, _ padding: IntOrPair
) -> ConvolutionGeometry {
  require(shape.count == 4, "\(operation): input must be [N, C, H, W], got \(shape)")
  require(
    padding.height * 2 <= kernelSize.height && padding.width * 2 <= kernelSize.width,
    "\(operation): padding \(padding) must be at most half of kernel size \(kernelSize) (input \(shape))")
  return ConvolutionGeometry(
    operation, input: shape, weight: [shape[1], 1, kernelSize.height, kernelSize.width],
    stride: stride ?? kernelSize, padding: padding, dilation: 1, groups: shape[1])
}

/// Calls `body(n, c)` for every (image, channel) plane, split across threads by plane, the planes
/// taken in the order they lie in `layout` (channel by channel for a channel-major map), so that a
/// thread's range of planes is one stream through memory rather than a jump to another channel at
/// every plane.
private func forEachPlane(_ g: ConvolutionGeometry, orderedLike layout: Tensor, _ body: (Int, Int) -> Void) {
  let channelMajor = layout.strides[1] > layout.strides[0]
  Parallel.forRanges(g.batch * g.inputChannels, costPerItem: g.outputPlane * g.kernelHeight * g.kernelWidth) { planes in
    for p in planes {
      if channelMajor { body(p % g.batch, p / g.batch) } else { body(p / g.inputChannels, p % g.inputChannels) }
    }
  }
}

extension Tensor {
  /// The first element of plane (n, c) of an image tensor with dense planes.
  fileprivate func plane<T: TensorScalar>(_ n: Int, _ c: Int, _: T.Type) -> UnsafeMutablePointer<T> {
    base(T.self) + n * strides[0] + c * strides[1]
  }
}

/// The window of output pixel (oy, ox): its first input row and column and how far it reaches.
@inline(__always)
private func window(_ g: ConvolutionGeometry, _ oy: Int, _ ox: Int) -> (y0: Int, y1: Int, x0: Int, x1: Int) {
  let y = oy * g.stride.height - g.padding.height, x = ox * g.stride.width - g.padding.width
  return (max(y, 0), min(y + g.kernelHeight, g.height), max(x, 0), min(x + g.kernelWidth, g.width))
}

/// The maximum of each window; padding never wins.
///
/// - `stride`: defaults to the kernel size.
public func maxPool2d(_ input: Tensor, kernelSize: IntOrPair, stride: IntOrPair? = nil, padding: IntOrPair = 0) -> Tensor {
  let g = poolingGeometry("maxPool2d", input.shape, kernelSize, stride, padding)
  let x = input.withDensePlanes()
  let y = Tensor(uninitializedShape: g.outputShape, dtype: x.dtype, strides: PlaneLayout.strides(g.outputShape, orderedLike: x))
  func kernel<T: TensorScalar>(_: T.Type) {
    forEachPlane(g, orderedLike: x) { n, c in
      let src = x.plane(n, c, T.self), dst = y.plane(n, c, T.self)
      for oy in 0..<g.outputHeight {
        for ox in 0..<g.outputWidth {
          let w = window(g, oy, ox)
          var best = -T.infinity
          for iy in w.y0..<w.y1 { for ix in w.x0..<w.x1 where src[iy * g.width + ix] > best || src[iy * g.width + ix].isNaN { best = src[iy * g.width + ix] } }
          dst[oy * g.outputWidth + ox] = best
        }
      }
    }
  }
  x.dtype.dispatch(kernel, kernel)
  return y
}

/// The gradient of ``maxPool2d(_:kernelSize:stride:padding:)``: each window's gradient goes to
/// its first maximal input element (found again from `input`, so no indices are stored).
public func maxPool2dBackward(
  _ gradOutput: Tensor, _ input: Tensor, kernelSize: IntOrPair, stride: IntOrPair? = nil, padding: IntOrPair = 0
) -> Tensor {
  let g = poolingGeometry("maxPool2dBackward", input.shape, kernelSize, stride, padding)
  require(gradOutput.shape == g.outputShape, "maxPool2dBackward: gradient \(gradOutput.shape) does not match output \(g.outputShape)")
  let x = input.withDensePlanes(), dy = gradOutput.withDensePlanes()
  let dx = Tensor(uninitializedShape: x.shape, dtype: x.dtype, strides: PlaneLayout.strides(x.shape, orderedLike: x))
  func kernel<T: TensorScalar>(_: T.Type) {
    forEachPlane(g, orderedLike: x) { n, c in
      let src = x.plane(n, c, T.self), grad = dx.plane(n, c, T.self), gout = dy.plane(n, c, T.self)
      grad.update(repeating: 0, count: g.height * g.width)
      for oy in 0..<g.outputHeight {
        for ox in 0..<g.outputWidth {
          let w = window(g, oy, ox)
          var best = -T.infinity, at = -1
          for iy in w.y0..<w.y1 { for ix in w.x0..<w.x1 where src[iy * g.width + ix] > best || (at < 0) { best = src[iy * g.width + ix]; at = iy * g.width + ix } }
          if at >= 0 { grad[at] += gout[oy * g.outputWidth + ox] }
        }
      }
    }
  }
  x.dtype.dispatch(kernel, kernel)
  return dx
}

/// The mean of each window. With `countingPadding` (PyTorch's default) padded positions count in
/// the divisor; without it only the input elements in the window do.
public func avgPool2d(
  _ input: Tensor, kernelSize: IntOrPair, stride: IntOrPair? = nil, padding: IntOrPair = 0, countingPadding: Bool = true
) -> Tensor {
  let g = poolingGeometry("avgPool2d", input.shape, kernelSize, stride, padding)
  let x = input.withDensePlanes()
  let y = Tensor(uninitializedShape: g.outputShape, dtype: x.dtype, strides: PlaneLayout.strides(g.outputShape, orderedLike: x))
  func kernel<T: TensorScalar>(_: T.Type) {
    forEachPlane(g, orderedLike: x) { n, c in
      let src = x.plane(n, c, T.self), dst = y.plane(n, c, T.self)
      if isHalving(g) {
        // The transitions' 2x2 windows, summed in the general loop's order.
        for oy in 0..<g.outputHeight {
          let top = src + 2 * oy * g.width, bottom = top + g.width, row = dst + oy * g.outputWidth
          for ox in 0..<g.outputWidth { row[ox] = (top[2 * ox] + top[2 * ox + 1] + bottom[2 * ox] + bottom[2 * ox + 1]) / 4 }
        }
        return
      }
      for oy in 0..<g.outputHeight {
        for ox in 0..<g.outputWidth {
          let w = window(g, oy, ox)
          var total: T = 0
          for iy in w.y0..<w.y1 { for ix in w.x0..<w.x1 { total += src[iy * g.width + ix] } }
          dst[oy * g.outputWidth + ox] = total / T(divisor(g, w, countingPadding, oy, ox))
        }
      }
    }
  }
  x.dtype.dispatch(kernel, kernel)
  return y
}

/// The gradient of ``avgPool2d(_:kernelSize:stride:padding:countingPadding:)``.
public func avgPool2dBackward(
  _ gradOutput: Tensor, inputShape: [Int], kernelSize: IntOrPair, stride: IntOrPair? = nil, padding: IntOrPair = 0,
  countingPadding: Bool = true
) -> Tensor {
  let g = poolingGeometry("avgPool2dBackward", inputShape, kernelSize, stride, padding)
  require(gradOutput.shape == g.outputShape, "avgPool2dBackward: gradient \(gradOutput.shape) does not match output \(g.outputShape)")
  let dy = gradOutput.withDensePlanes()
  let dx = Tensor(uninitializedShape: inputShape, dtype: dy.dtype, strides: PlaneLayout.strides(inputShape, orderedLike: dy))
  func kernel<T: TensorScalar>(_: T.Type) {
    forEachPlane(g, orderedLike: dy) { n, c in
      let grad = dx.plane(n, c, T.self), gout = dy.plane(n, c, T.self)
      if isHalving(g) {
        // Every input element lies in exactly one window: written once, no zeroing.
        for oy in 0..<g.outputHeight {
          let top = grad + 2 * oy * g.width, bottom = top + g.width, row = gout + oy * g.outputWidth
          for ox in 0..<g.outputWidth {
            let share = row[ox] / 4
            (top[2 * ox], top[2 * ox + 1], bottom[2 * ox], bottom[2 * ox + 1]) = (share, share, share, share)
          }
        }
        return
      }
      grad.update(repeating: 0, count: g.height * g.width)
      for oy in 0..<g.outputHeight {
        for ox in 0..<g.outputWidth {
          let w = window(g, oy, ox)
          let share = gout[oy * g.outputWidth + ox] / T(divisor(g, w, countingPadding, oy, ox))
          for iy in w.y0..<w.y1 { for ix in w.x0..<w.x1 { grad[iy * g.width + ix] += share } }
        }
      }
    }
  }
  dy.dtype.dispatch(kernel, kernel)
  return dx
}

/// Whether the windows are 2x2 with stride 2 and no padding and tile the input exactly (even
/// height and width): every input element then lies in exactly one window, which holds 4.
@inline(__always)
private func isHalving(_ g: ConvolutionGeometry) -> Bool {
  g.kernelHeight == 2 && g.kernelWidth == 2 && g.stride.height == 2 && g.stride.width == 2 && g.padding.height == 0
    && g.padding.width == 0 && g.height % 2 == 0 && g.width % 2 == 0
}

/// The number an average-pooling window divides by.
@inline(__always)
private func divisor(_ g: ConvolutionGeometry, _ w: (y0: Int, y1: Int, x0: Int, x1: Int), _ countingPadding: Bool, _ oy: Int, _ ox: Int) -> Int {
  if !countingPadding { return max(1, (w.y1 - w.y0) * (w.x1 - w.x0)) }
  let y = oy * g.stride.height - g.padding.height, x = ox * g.stride.width - g.padding.width
  let yEnd = min(y + g.kernelHeight, g.height + g.padding.height), xEnd = min(x + g.kernelWidth, g.width + g.padding.width)
  return (yEnd - y) * (xEnd - x)
}
