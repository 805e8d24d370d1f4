/// Depthwise convolution (one filter per channel: groups = input channels = output channels) as
/// direct loops over each (image, channel) plane.
///
/// With one input channel per group, im2col and GEMM would multiply a 1 x K² row by a K² x (H·W)
/// matrix per channel: all copying, hardly any arithmetic. The direct loops read each input plane
/// once per kernel tap along contiguous rows, which the compiler vectorises for stride 1. In Float32
/// with AVX2 C kernels run instead, for every stride: along rows for large planes
/// (DepthwiseConvolution+Planes.swift), across channels for small ones and for every weight gradient
/// (DepthwiseConvolution+Lanes.swift); these loops serve Float64 and processors without AVX2.
struct DepthwiseConvolution {
  let g: ConvolutionGeometry

  /// The kernel's taps per channel.
  var taps: Int { g.kernelHeight * g.kernelWidth }

  /// Whether `g` is a depthwise convolution with channel multiplier 1.
  static func applies(to g: ConvolutionGeometry) -> Bool {
    g.groups == g.inputChannels && g.groups == g.outputChannels && g.groups > 1
  }

  /// The output columns `ox` whose input column for horizontal tap `kx` lies inside the image.
  func columns(tap kx: Int) -> Range<Int> {
    let shift = g.padding.width - kx * g.dilation.width, sw = g.stride.width
    let lower = shift <= 0 ? 0 : (shift + sw - 1) / sw
    let last = g.width - 1 + shift
    let upper = last < 0 ? 0 : min(g.outputWidth, last / sw + 1)
    return lower..<max(lower, upper)
  }

  /// The input row of output row `oy` for vertical tap `ky`, if it lies inside the image.
  func inputRow(_ oy: Int, tap ky: Int) -> Int? {
    let iy = oy * g.stride.height - g.padding.height + ky * g.dilation.height
    return iy >= 0 && iy < g.height ? iy : nil
  }

  /// Calls `body(ky, kx, iy, oy, columns, inputOffset)` for every tap and output row with a valid
  /// input row; input column = ox * stride + inputOffset.
  @inline(__always)
  func forEachTapRow(_ body: (Int, Int, Int, Int, Range<Int>, Int) -> Void) {
    for ky in 0..<g.kernelHeight {
      for kx in 0..<g.kernelWidth {
        let range = columns(tap: kx), offset = kx * g.dilation.width - g.padding.width
        if range.isEmpty { continue }
        for oy in 0..<g.outputHeight {
          guard let iy = inputRow(oy, tap: ky) else { continue }
          body(ky, kx, iy, oy, range, offset)
        }
      }
    }
  }

  func forward<T: TensorScalar>(_ x: Tensor, _ w: Tensor, into y: Tensor, _: T.Type) {
    if usesChannelLanes(T.self) { return forwardByLanes(x, w, into: y) }
    if usesPlaneKernels(T.self) { return forwardByPlanes(x, w, into: y) }
    let xl = PlaneLayout(x), yl = PlaneLayout(y), px = x.base(T.self), pw = w.base(T.self), py = y.base(T.self)
    let (kk, sw, iw, ow) = (taps, g.stride.width, g.width, g.outputWidth)
    Parallel.forRanges(g.batch * g.inputChannels, costPerItem: g.outputPlane * kk) { planes in
      for p in planes {
        let c = p / g.batch, n = p % g.batch
        let src = px + n * xl.imageStride + c * xl.channelStride, dst = py + n * yl.imageStride + c * yl.channelStride
        dst.update(repeating: 0, count: g.outputPlane)
        forEachTapRow { ky, kx, iy, oy, range, offset in
          let weight = pw[c * kk + ky * g.kernelWidth + kx], row = src + iy * iw + offset, out = dst + oy * ow
          if sw == 1 {
            for ox in range { out[ox] += weight * row[ox] }
          } else {
            for ox in range { out[ox] += weight * row[ox * sw] }
          }
        }
      }
    }
  }

  func backwardInput<T: TensorScalar>(_ dy: Tensor, _ w: Tensor, into dx: Tensor, _: T.Type) {
    if usesChannelLanes(T.self) { return backwardInputByLanes(dy, w, into: dx) }
    if usesPlaneKernels(T.self) { return backwardInputByPlanes(dy, w, into: dx) }
    let dyl = PlaneLayout(dy), dxl = PlaneLayout(dx), pdy = dy.base(T.self), pw = w.base(T.self), pdx = dx.base(T.self)
    let (kk, sw, iw, ow) = (taps, g.stride.width, g.width, g.outputWidth)
    Parallel.forRanges(g.batch * g.inputChannels, costPerItem: g.outputPlane * kk) { planes in
      for p in planes {
        let c = p / g.batch, n = p % g.batch
        let src = pdy + n * dyl.imageStride + c * dyl.channelStride, dst = pdx + n * dxl.imageStride + c * dxl.channelStride
        dst.update(repeating: 0, count: g.height * iw)
        forEachTapRow { ky, kx, iy, oy, range, offset in
          let weight = pw[c * kk + ky * g.kernelWidth + kx], row = dst + iy * iw + offset, grad = src + oy * ow
          if sw == 1 {
            for ox in range { row[ox] += weight * grad[ox] }
          } else {
            for ox in range { row[ox * sw] += weight * grad[ox] }
          }
        }
      }
    }
  }

  /// Each tap's weight gradient is a sum over every output position. Summed along each row with one
  /// running total, the loop cannot vectorise (floating-point addition does not reassociate); so
  /// every (tap, output column) keeps its own running total over images and rows, an element-wise
  /// update that does vectorise, and each tap's totals are added in column order at the end. The
  /// running totals cover one image and are then added into Float64 sums, so no total runs over
  /// more than one image's rows (the blocked summation of Summation.swift).
  func backwardWeight<T: TensorScalar>(_ dy: Tensor, _ x: Tensor, into dw: Tensor, _: T.Type) {
    if usesPlaneKernels(T.self) { return backwardWeightByLanes(dy, x, into: dw) }
    let dyl = PlaneLayout(dy), xl = PlaneLayout(x), pdy = dy.base(T.self), px = x.base(T.self), pdw = dw.base(T.self)
    let (kk, sw, iw, ow) = (taps, g.stride.width, g.width, g.outputWidth)
    Parallel.forRanges(g.inputChannels, costPerItem: g.batch * g.outputPlane * kk) { channels in
      let totals = UnsafeMutablePointer<T>.allocate(capacity: kk * ow), sums = UnsafeMutablePointer<Double>.allocate(capacity: kk * ow)
      defer { totals.deallocate(); sums.deallocate() }
      for c in channels {
        sums.update(repeating: 0, count: kk * ow)
        for n in 0..<g.batch {
          totals.update(repeating: 0, count: kk * ow)
          let grad = pdy + n * dyl.imageStride + c * dyl.channelStride, src = px + n * xl.imageStride + c * xl.channelStride
          forEachTapRow { ky, kx, iy, oy, range, offset in
            let row = src + iy * iw + offset, out = grad + oy * ow, total = totals + (ky * g.kernelWidth + kx) * ow
            if sw == 1 {
              for ox in range { total[ox] += out[ox] * row[ox] }
            } else {
              var input = row + range.lowerBound * sw
              for ox in range {
                total[ox] += out[ox] * input.pointee
                input += sw
              }
            }
          }
          for i in 0..<kk * ow { sums[i] += Double(totals[i]) }
        }
        for t in 0..<kk {
          var sum = 0.0
          for ox in 0..<ow { sum += sums[t * ow + ox] }
          pdw[c * kk + t] = T(sum)
        }
      }
    }
  }
}
