/// Stride-1 convolution as a sum of shifted matrix products, with no im2col.
///
/// Pad every (channel, image) plane once into a grid of Hp x Wp and lay the channel's planes end to
/// end. Then output pixel (n, oy, ox), numbered t = n·Hp·Wp + oy·Wp + ox on the same grid, reads
/// input t + offset(ky, kx) with offset = ky·dh·Wp + kx·dw for every kernel tap: each tap is one GEMM
/// of the tap's [O, C] weight slice with the padded input shifted by a constant. Neighbouring rows
/// and images share their zero margins: a row's right padding is the next row's left padding, so
/// Wp = W + p and Hp = H + p (not W + 2p and H + 2p), and the channel's grid ends with the last
/// image's bottom margin. The grid positions that are not outputs (the margins) are computed and
/// dropped. This trades (Hp·Wp) / (OH·OW) more multiply-adds (6% for 32x32 planes, 27% for 8x8)
/// for no im2col matrix at all, which pays for the narrow 3x3 convolutions of dense layers (k
/// output channels) where building the matrix cost more than the product.
struct ShiftedGrid {
  let g: ConvolutionGeometry
  /// Plane pitches: the rows of a padded plane and the elements of a padded row.
  let paddedHeight, paddedWidth: Int
  /// Elements per channel of the padded input: N·Hp·Wp and the last image's bottom margin.
  let length: Int
  /// Grid positions computed per output channel: up to the last real output pixel.
  let span: Int
  /// The shift of each kernel tap, in tap order (ky, kx).
  let offsets: [Int]

  init(_ g: ConvolutionGeometry) {
    self.g = g
    // The shared margin must hold the padding on either side and any output beyond the input's size.
    let wp = g.width + max(g.padding.width, g.outputWidth - g.width, 0)
    paddedHeight = g.height + max(g.padding.height, g.outputHeight - g.height, 0)
    paddedWidth = wp
    let reach = g.dilation.height * (g.kernelHeight - 1) * wp + g.dilation.width * (g.kernelWidth - 1)
    span = (g.batch - 1) * paddedHeight * wp + (g.outputHeight - 1) * wp + g.outputWidth
    length = span + reach
    offsets = (0..<g.kernelHeight * g.kernelWidth).map { k in
      k / g.kernelWidth * g.dilation.height * wp + k % g.kernelWidth * g.dilation.width
    }
  }

  /// Whether this path is the faster one: stride 1, not pointwise, and enough channels per group for
  /// each tap's GEMM to be worth a call. Ungrouped convolutions take it from 2 input channels (an RGB
  /// stem's 3 included: faster than an im2col matrix in all three passes for 3x3, 5x5 and 7x7
  /// kernels; at 1 channel the forward pass gained and the gradients lost); grouped ones, with a
  /// GEMM per group and tap, from 8 (docs/performance.md has the measurements behind both
  /// thresholds).
  static func applies(to g: ConvolutionGeometry) -> Bool {
    g.stride == 1 && !g.isPointwise && g.groupInputs >= (g.groups == 1 ? 2 : 8) && g.groupOutputs >= 4
  }

  /// The padded copy of image tensor `x` ([N, C, H, W] with dense planes): [C, N, Hp, Wp] flattened.
  /// With `normalizing`, each value v of channel c is copied as max(v · scale[c] + shift[c], 0):
  /// the values of ``batchNormalized(_:mean:variance:weight:bias:epsilon:applyingReLU:ceiling:)`` with the
  /// ReLU, bit for bit, without that map as a tensor of its own.
  func padded<T: TensorScalar>(_ x: Tensor, _: T.Type, normalizing affine: (scale: [T], shift: [T])? = nil) -> Tensor {
    let out = Tensor(uninitializedShape: [g.inputChannels * length], dtype: T.dtype)
    let layout = PlaneLayout(x), src = x.base(T.self), dst = out.base(T.self)
    let (h, w, hp, wp, top, left) = (g.height, g.width, paddedHeight, paddedWidth, g.padding.height, g.padding.width)
    Parallel.forRanges(g.inputChannels * g.batch, costPerItem: hp * wp) { planes in
      for p in planes {
        let c = p / g.batch, n = p % g.batch
        let from = src + n * layout.imageStride + c * layout.channelStride, to = dst + c * length + n * hp * wp
        to.update(repeating: 0, count: top * wp)
        for y in 0..<h {
          // Row pointers computed once: index arithmetic with overflow checks inside the loops
          // keeps them from being vectorised.
          let row = to + (y + top) * wp, source = from + y * w, inner = row + left
          row.update(repeating: 0, count: left)
          if let affine {
            let (scale, shift) = (affine.scale[c], affine.shift[c])
            for x in 0..<w { inner[x] = Swift.max(source[x] * scale + shift, 0) }
          } else {
            inner.update(from: source, count: w)
          }
          (inner + w).update(repeating: 0, count: wp - left - w)
        }
        (to + (top + h) * wp).update(repeating: 0, count: (hp - top - h) * wp)
        if n == g.batch - 1 {  // the last image's bottom margin
          (to + hp * wp).update(repeating: 0, count: length - g.batch * hp * wp)
        }
      }
    }
    return out
  }

  /// Images every Hp·Wp elements of the grid, rows every Wp.
  var pitch: DirectConvolution.Pitch { DirectConvolution.Pitch(image: paddedHeight * paddedWidth, row: paddedWidth) }

  /// The output-shaped tensor `dy` ([N, O, OH, OW]) spread onto the grid, zero at non-output positions:
  /// [O, span] flattened.
  func spread<T: TensorScalar>(_ dy: Tensor, _: T.Type) -> Tensor {
    DirectConvolution.gradientGrid(dy, T.self, reach: 0, pitch: pitch, extent: span)
  }

  /// Copies from grid planes (one channel every `channelLength` elements, one image every Hp·Wp)
  /// the window at (`top`, `left`) the size of `target`'s planes into `target` [N, C, H, W].
  func extract<T: TensorScalar>(
    _ grid: UnsafePointer<T>, channelLength: Int, top: Int, left: Int, into target: Tensor, _: T.Type
  ) {
    let layout = PlaneLayout(target), out = target.base(T.self)
    let (channels, h, w, hp, wp) = (target.shape[1], target.shape[2], target.shape[3], paddedHeight, paddedWidth)
    Parallel.forRanges(channels, costPerItem: channelLength) { range in
      for c in range {
        for n in 0..<g.batch {
          let to = out + n * layout.imageStride + c * layout.channelStride
          for y in 0..<h {
            (to + y * w).update(from: grid + c * channelLength + n * hp * wp + (y + top) * wp + left, count: w)
          }
        }
      }
    }
  }

  /// The weight [O, C/g, KH, KW] regrouped by tap: [KH·KW, O, C/g].
  func taps<T: TensorScalar>(_ weight: Tensor, _: T.Type) -> Tensor {
    let kk = g.kernelHeight * g.kernelWidth, rows = g.outputChannels * g.groupInputs
    let out = Tensor(uninitializedShape: [kk * rows], dtype: T.dtype)
    let src = weight.contiguous().base(T.self), dst = out.base(T.self)
    for r in 0..<rows { for k in 0..<kk { dst[k * rows + r] = src[r * kk + k] } }
    return out
  }
}

extension ShiftedGrid {
  func forward<T: TensorScalar>(
    _ x: Tensor, _ weight: Tensor, into y: Tensor, _: T.Type, normalizing affine: (scale: [T], shift: [T])? = nil
  ) {
    if usesVectorKernels(T.self) { return forwardDirect(x, weight, into: y, T.self, normalizing: affine) }
    let xp = padded(x, T.self, normalizing: affine)
    if g.groupOutputs <= 8 && offsets.count <= 9 { return forwardStacked(xp, weight, into: y, T.self) }
    let wk = taps(weight, T.self)
    let yp = Tensor(uninitializedShape: [g.outputChannels * span], dtype: T.dtype)
    let px = xp.base(T.self), pw = wk.base(T.self), pyp = yp.base(T.self)
    let rows = g.outputChannels * g.groupInputs
    for group in 0..<g.groups {
      for (k, offset) in offsets.enumerated() {
        T.gemm(
          transposeA: false, transposeB: false, m: g.groupOutputs, n: span, k: g.groupInputs, alpha: 1,
          a: pw + k * rows + group * g.groupOutputs * g.groupInputs, lda: g.groupInputs,
          b: px + group * g.groupInputs * length + offset, ldb: length, beta: k == 0 ? 0 : 1,
          c: pyp + group * g.groupOutputs * span, ldc: span)
      }
    }
    // Keep the real output pixels.
    extract(pyp, channelLength: span, top: 0, left: 0, into: y, T.self)
  }

  /// The forward pass for few outputs per group (the k-channel convolutions of dense and
  /// sequentially aggregated layers) where the direct kernel does not run (Float64, or a processor
  /// without AVX2 and FMA; see ShiftedConvolution+Direct.swift). A GEMM per tap would pack the whole
  /// padded input once per tap for only O rows of products; instead one GEMM per group computes
  /// every tap's products at once, Z = W_taps (taps·O x C/g) · x_grid (C/g x length), packing the
  /// input once, and output (o, t) sums the rows (k, o) of Z at t + offset(k), in tap order,
  /// straight into `y`. Taken for up to 8 outputs per group and 9 taps: Z grows with taps times
  /// outputs, so wider or larger kernels (DenseNet's k = 12, ResNet-20's 16 outputs, MixConv's 5x5
  /// and 7x7 parts) are faster with a GEMM per tap (docs/performance.md).
  func forwardStacked<T: TensorScalar>(_ xp: Tensor, _ weight: Tensor, into y: Tensor, _: T.Type) {
    let o = g.groupOutputs, kk = offsets.count, rows = kk * o
    let z = Tensor(uninitializedShape: [rows * length], dtype: T.dtype)
    let px = xp.base(T.self), pz = z.base(T.self), layout = PlaneLayout(y), out = y.base(T.self)
    let (oh, ow, hp, wp) = (g.outputHeight, g.outputWidth, paddedHeight, paddedWidth)
    for group in 0..<g.groups {
      let wk = groupTaps(weight, group: group, T.self)
      T.gemm(
        transposeA: false, transposeB: false, m: rows, n: length, k: g.groupInputs, alpha: 1, a: wk.base(T.self),
        lda: g.groupInputs, b: px + group * g.groupInputs * length, ldb: length, beta: 0, c: pz, ldc: length)
      Parallel.forRanges(o * g.batch, costPerItem: kk * oh * ow) { planes in
        for p in planes {
          let channel = p / g.batch, n = p % g.batch
          let plane = out + n * layout.imageStride + (group * o + channel) * layout.channelStride
          for row in 0..<oh {
            let target = plane + row * ow, t = n * hp * wp + row * wp
            target.update(from: pz + channel * length + t + offsets[0], count: ow)
            for k in 1..<kk {
              let source = pz + (k * o + channel) * length + t + offsets[k]
              for column in 0..<ow { target[column] += source[column] }
            }
          }
        }
      }
    }
  }

  func backwardInput<T: TensorScalar>(_ dy: Tensor, _ weight: Tensor, into dx: Tensor, _: T.Type) {
    if usesVectorKernels(T.self) { return backwardDirect(dy, input: nil, weight: weight, inputGradient: dx, weightGradient: nil, T.self) }
    if usesShiftedGradient { return backwardInputByShiftedGradient(dy, weight, into: dx, T.self) }
    let dyp = spread(dy, T.self), wk = taps(weight, T.self)
    let dxp = Tensor(repeating: 0, shape: [g.inputChannels * length], dtype: T.dtype)
    let pdy = dyp.base(T.self), pw = wk.base(T.self), pdx = dxp.base(T.self)
    let rows = g.outputChannels * g.groupInputs
    for group in 0..<g.groups {
      for (k, offset) in offsets.enumerated() {
        T.gemm(
          transposeA: true, transposeB: false, m: g.groupInputs, n: span, k: g.groupOutputs, alpha: 1,
          a: pw + k * rows + group * g.groupOutputs * g.groupInputs, lda: g.groupInputs,
          b: pdy + group * g.groupOutputs * span, ldb: span, beta: 1,
          c: pdx + group * g.groupInputs * length + offset, ldc: length)
      }
    }
    // Crop the padding away.
    extract(pdx, channelLength: length, top: g.padding.height, left: g.padding.width, into: dx, T.self)
  }

  /// `dw = dy ⋆ x`; with `normalizing`, `x` is normalised as it is padded (see
  /// ``padded(_:_:normalizing:)``).
  func backwardWeight<T: TensorScalar>(
    _ dy: Tensor, _ x: Tensor, into dw: Tensor, _: T.Type, normalizing affine: (scale: [T], shift: [T])? = nil
  ) {
    if usesVectorKernels(T.self) {
      return backwardDirect(dy, input: x, weight: nil, inputGradient: nil, weightGradient: dw, T.self, normalizing: affine)
    }
    if usesShiftedGradient {
      return backwardByShiftedGradient(dy, input: x, weight: nil, inputGradient: nil, weightGradient: dw, T.self, normalizing: affine)
    }
    let dyp = spread(dy, T.self), xp = padded(x, T.self, normalizing: affine)
    let kk = offsets.count, rows = g.outputChannels * g.groupInputs
    let dwk = Tensor(uninitializedShape: [kk * rows], dtype: T.dtype)
    let pdy = dyp.base(T.self), px = xp.base(T.self), pdwk = dwk.base(T.self)
    for group in 0..<g.groups {
      for (k, offset) in offsets.enumerated() {
        T.gemm(
          transposeA: false, transposeB: true, m: g.groupOutputs, n: g.groupInputs, k: span, alpha: 1,
          a: pdy + group * g.groupOutputs * span, lda: span, b: px + group * g.groupInputs * length + offset, ldb: length,
          beta: 0, c: pdwk + k * rows + group * g.groupOutputs * g.groupInputs, ldc: g.groupInputs)
      }
    }
    let out = dw.base(T.self)
    for r in 0..<rows { for k in 0..<kk { out[r * kk + k] = pdwk[k * rows + r] } }
  }
}

/// Both gradients of a convolution with few outputs per group (the k-channel convolutions of dense
/// and sequentially aggregated layers), as single GEMMs over all taps.
///
/// Per tap, the input gradient is a product with only O (= k) terms per element that rewrites the
/// whole padded input gradient, nine times for a 3x3 kernel, and the weight gradient re-reads the
/// whole padded input nine times. Instead the output gradient, O rows only, is copied once per tap
/// shifted back by the tap's offset: rows (tap, o) of S. Then dx_grid = W_tapsᵀ · S (K = taps·O)
/// and dW_taps = S · x_gridᵀ (one pass over the input) are one GEMM each.
extension ShiftedGrid {
  /// Whether the gradients go through the shifted output gradient: few outputs per group.
  var usesShiftedGradient: Bool { g.groupOutputs <= 32 }

  /// Rows (tap, o) of one group's output gradient on the input grid, row (k, o) at position s holding
  /// dy[o] at grid position s - offset(k) and zero where that is no output: [taps·O, length].
  func shiftedGradient<T: TensorScalar>(_ dy: Tensor, group: Int, _: T.Type) -> Tensor {
    let o = g.groupOutputs, kk = offsets.count
    let out = Tensor(uninitializedShape: [kk * o * length], dtype: T.dtype)
    let layout = PlaneLayout(dy), src = dy.base(T.self), dst = out.base(T.self)
    let (oh, ow, hp, wp) = (g.outputHeight, g.outputWidth, paddedHeight, paddedWidth)
    Parallel.forRanges(kk * o, costPerItem: length) { rows in
      for r in rows {
        // One pass over the row: zeros only between the copied output rows.
        let k = r / o, channel = group * o + r % o, row = dst + r * length
        var written = 0
        for n in 0..<g.batch {
          let from = src + n * layout.imageStride + channel * layout.channelStride
          for y in 0..<oh {
            let start = offsets[k] + n * hp * wp + y * wp
            (row + written).update(repeating: 0, count: start - written)
            (row + start).update(from: from + y * ow, count: ow)
            written = start + ow
          }
        }
        (row + written).update(repeating: 0, count: length - written)
      }
    }
    return out
  }

  /// One group's weights as [taps·O, C/g]: row (k, o) holds weight[o, :, k].
  func groupTaps<T: TensorScalar>(_ weight: Tensor, group: Int, _: T.Type) -> Tensor {
    let o = g.groupOutputs, ci = g.groupInputs, kk = offsets.count
    let out = Tensor(uninitializedShape: [kk * o * ci], dtype: T.dtype)
    let src = weight.contiguous().base(T.self), dst = out.base(T.self)
    for k in 0..<kk {
      for oo in 0..<o { for c in 0..<ci { dst[(k * o + oo) * ci + c] = src[((group * o + oo) * ci + c) * kk + k] } }
    }
    return out
  }

  func backwardInputByShiftedGradient<T: TensorScalar>(_ dy: Tensor, _ weight: Tensor, into dx: Tensor, _: T.Type) {
    backwardByShiftedGradient(dy, input: nil, weight: weight, inputGradient: dx, weightGradient: nil, T.self)
  }

  /// The input gradient (into `inputGradient`, from `weight`) and the weight gradient (into
  /// `weightGradient`, from `input`), either or both, from one shifted output gradient per group.
  /// With `normalizing`, the input is normalised as it is padded (see ``padded(_:_:normalizing:)``).
  func backwardByShiftedGradient<T: TensorScalar>(
    _ dy: Tensor, input x: Tensor?, weight: Tensor?, inputGradient dx: Tensor?, weightGradient dw: Tensor?, _: T.Type,
    normalizing affine: (scale: [T], shift: [T])? = nil
  ) {
    if usesVectorKernels(T.self) {
      return backwardDirect(dy, input: x, weight: weight, inputGradient: dx, weightGradient: dw, T.self, normalizing: affine)
    }
    let o = g.groupOutputs, ci = g.groupInputs, kk = offsets.count
    let product = dw.map { _ in Tensor(uninitializedShape: [kk * o * ci], dtype: T.dtype) }
    var xp = dw == nil ? nil : x.map { padded($0, T.self, normalizing: affine) }
    var dxp: Tensor?
    for group in 0..<g.groups {
      let shifted = shiftedGradient(dy, group: group, T.self)
      // The weight gradient first, so that the padded input is gone before the input gradient's
      // grid is allocated: one grid-sized buffer less at the peak.
      if let dw, let xpGrid = xp, let product {
        let out = dw.base(T.self), p = product.base(T.self)
        T.gemm(
          transposeA: false, transposeB: true, m: kk * o, n: ci, k: length, alpha: 1, a: shifted.base(T.self), lda: length,
          b: xpGrid.base(T.self) + group * ci * length, ldb: length, beta: 0, c: p, ldc: ci)
        for k in 0..<kk {
          for oo in 0..<o { for c in 0..<ci { out[((group * o + oo) * ci + c) * kk + k] = p[(k * o + oo) * ci + c] } }
        }
      }
      if group == g.groups - 1 { xp = nil }
      if dx != nil, let weight {
        if dxp == nil { dxp = Tensor(uninitializedShape: [g.inputChannels * length], dtype: T.dtype) }
        let w = groupTaps(weight, group: group, T.self)
        T.gemm(
          transposeA: true, transposeB: false, m: ci, n: length, k: kk * o, alpha: 1, a: w.base(T.self), lda: ci,
          b: shifted.base(T.self), ldb: length, beta: 0, c: dxp!.base(T.self) + group * ci * length, ldc: length)
      }
    }
    if let dx, let dxp {
      extract(dxp.base(T.self), channelLength: length, top: g.padding.height, left: g.padding.width, into: dx, T.self)
    }
  }
}
