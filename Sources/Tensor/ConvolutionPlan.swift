/// How a convolution of one geometry is computed: the method, chosen once from the sizes alone, and
/// its three operations (forward, input gradient, weight gradient), so that the forward pass and both
/// gradients of a geometry always take the same path and a new method lands in one place.
///
/// The methods, in the order they are tried:
/// - `empty`: nothing to compute (no output pixels, no outputs or an empty patch); every result is
///   zeros.
/// - `depthwise`: one filter per channel, direct loops over planes (``DepthwiseConvolution``).
/// - `winograd`: 3x3, stride 1, padding 1, ungrouped and wide (see ``WinogradConvolution/applies(to:)``),
///   by Winograd's F(2x2, 3x3) (Float32 on AVX2; other scalars take the shifted grid).
/// - `shiftedGrid`: stride 1 and enough channels per group, shifted products over a padded grid with
///   no im2col matrix (``ShiftedGrid``; on AVX2 in Float32 a direct register kernel).
/// - `phaseGrid`: a stride above 1, enough channels per group and at most 64 outputs per group, the
///   direct kernels on the input's phases (``PhaseGrid``); Float32 on AVX2 only, other scalars and
///   processors take im2col.
/// - `pointwise`: 1x1, stride 1, no padding; the channel-major input is the GEMM operand itself.
/// - `im2col`: everything else; an im2col matrix of a chunk of images, one GEMM per group and chunk.
struct ConvolutionPlan {
  enum Method {
    case empty
    case depthwise(DepthwiseConvolution)
    case winograd(WinogradConvolution)
    case shiftedGrid(ShiftedGrid)
    case phaseGrid(PhaseGrid)
    case pointwise
    case im2col
  }

  let g: ConvolutionGeometry
  let method: Method
  /// Whether the weight gradient goes through im2col chunks and one GEMM each although the
  /// method is the shifted grid: ungrouped convolutions with more than 64 outputs. The direct
  /// kernel's weight gradient keeps 8 lanes of sums per (output, channel, tap) and adds a block of
  /// positions into them at a time; for wide layers (measured on ShakeNet's 96 to 384 channels,
  /// which now take Winograd) those sums outgrow the caches and OpenBLAS's blocked product is
  /// faster, the im2col matrix costing 1/(2·outputs) of a copy per multiply-add, while at 64 (then
  /// ResNet-20's and SE-ResNet-56's last stage) the direct kernel was (docs/performance.md). The
  /// forward pass and input gradient were slower through im2col at every width and stay direct.
  var weightGradientByColumns: Bool {
    if case .shiftedGrid = method { g.groups == 1 && g.groupOutputs > 64 } else { false }
  }

  init(_ g: ConvolutionGeometry) {
    self.g = g
    if g.batch * g.outputPlane == 0 || g.outputChannels == 0 || g.patchSize == 0 {
      method = .empty
    } else if DepthwiseConvolution.applies(to: g) {
      method = .depthwise(DepthwiseConvolution(g: g))
    } else if WinogradConvolution.applies(to: g) {
      method = .winograd(WinogradConvolution(g))
    } else if ShiftedGrid.applies(to: g) {
      method = .shiftedGrid(ShiftedGrid(g))
    } else if PhaseGrid.applies(to: g) {
      method = .phaseGrid(PhaseGrid(g))
    } else if g.isPointwise {
      method = .pointwise
    } else {
      method = .im2col
    }
  }

  /// Images per im2col chunk: about 4M elements of matrix at most, large enough for GEMMs that run
  /// at full speed, small enough to stay out of the memory peak.
  private var imagesPerChunk: Int {
    max(1, min(g.batch, (1 << 22) / (g.patchSize * g.outputPlane)))
  }

  /// The shifted grid when the convolution takes that path.
  var shiftedGrid: ShiftedGrid? {
    if case .shiftedGrid(let grid) = method { grid } else { nil }
  }

  /// Whether the method copies its input on the way in (into a padded grid, a scratch plane the
  /// Winograd transform reads, or the pointwise products' chunks), so that
  /// ``forward(_:_:into:_:normalizing:)`` can normalise it there: the pre-activation unit's fused
  /// batch normalisation and ReLU.
  var normalizesInput: Bool {
    switch method {
    case .shiftedGrid, .winograd: true
    case .pointwise: pointwiseInChunks
    default: false
    }
  }

  /// Whether ``gradients(_:_:_:inputGradient:weightGradient:_:normalizing:)`` can normalise the
  /// input on its way in as well: where the gradients share work, and the pointwise products in chunks.
  var gradientsNormalizeInput: Bool { sharesGradientWork || pointwiseInChunks }

  /// `y = conv(x, w)`; `x` has dense planes, `w` is contiguous, `y` is channel-major or a channel
  /// range of a channel-major tensor. With `affine` (only where ``normalizesInput``), the input is
  /// max(x · scale + shift, 0) per channel, computed as it is copied in.
  func forward<T: TensorScalar>(
    _ x: Tensor, _ w: Tensor, into y: Tensor, _: T.Type, normalizing affine: (scale: [T], shift: [T])? = nil
  ) {
    precondition(affine == nil || normalizesInput, "internal: a normalising forward pass for a plan that does not copy its input")
    switch method {
    case .empty: if y.count > 0 { fillZeros(y, T.self) }
    case .depthwise(let d): d.forward(x, w, into: y, T.self)
    case .winograd(let winograd): winograd.forward(x, w, into: y, T.self, normalizing: affine)
    case .shiftedGrid(let grid): grid.forward(x, w, into: y, T.self, normalizing: affine)
    case .phaseGrid(let grid) where usesVectorKernels(T.self): grid.forward(x, w, into: y)
    case .pointwise: pointwiseForward(x, w, into: y, T.self, normalizing: affine)
    case .phaseGrid, .im2col:
      let ldy = g.batch * g.outputPlane, pw = w.base(T.self), py = y.base(T.self)
      forEachColumnChunk(of: x, imagesPerChunk, T.self) { group, first, images, col in
        T.gemm(
          transposeA: false, transposeB: false, m: g.groupOutputs, n: images * g.outputPlane, k: g.patchSize, alpha: 1,
          a: pw + group * g.groupOutputs * g.patchSize, lda: g.patchSize, b: col, ldb: images * g.outputPlane, beta: 0,
          c: py + group * g.groupOutputs * ldy + first * g.outputPlane, ldc: ldy)
      }
    }
  }

  /// `dx = conv_transpose(dy, w)`; `dy` and `dx` are channel-major.
  func backwardInput<T: TensorScalar>(_ dy: Tensor, _ w: Tensor, into dx: Tensor, _: T.Type) {
    let ldy = g.batch * g.outputPlane
    switch method {
    case .empty: if dx.count > 0 { fillZeros(dx, T.self) }
    case .depthwise(let d): d.backwardInput(dy, w, into: dx, T.self)
    case .winograd(let winograd): winograd.backwardInput(dy, w, into: dx, T.self)
    case .shiftedGrid(let grid): grid.backwardInput(dy, w, into: dx, T.self)
    case .phaseGrid(let grid) where usesVectorKernels(T.self):
      grid.backward(dy, input: nil, weight: w, inputGradient: dx, weightGradient: nil)
    case .pointwise: pointwiseBackwardInput(dy, w, into: dx, T.self)
    case .phaseGrid, .im2col:
      let chunk = imagesPerChunk, layout = PlaneLayout(dx), pdy = dy.base(T.self), pw = w.base(T.self)
      let pdx = dx.base(T.self)
      fillZeros(dx, T.self)
      withColumns(chunk, T.self) { col in
        for group in 0..<g.groups {
          for first in stride(from: 0, to: g.batch, by: chunk) {
            let images = min(chunk, g.batch - first)
            T.gemm(
              transposeA: true, transposeB: false, m: g.patchSize, n: images * g.outputPlane, k: g.groupOutputs, alpha: 1,
              a: pw + group * g.groupOutputs * g.patchSize, lda: g.patchSize,
              b: pdy + group * g.groupOutputs * ldy + first * g.outputPlane, ldb: ldy, beta: 0, c: col, ldc: images * g.outputPlane)
            col2im(g, col: col, gradInput: pdx, layout: layout, firstChannel: group * g.groupInputs, firstImage: first, images: images)
          }
        }
      }
    }
  }

  /// `dw = dy ⋆ x`; `dy` is channel-major, `x` has dense planes, `dw` is contiguous.
  func backwardWeight<T: TensorScalar>(_ dy: Tensor, _ x: Tensor, into dw: Tensor, _: T.Type) {
    switch method {
    case .empty: if dw.count > 0 { fillZeros(dw, T.self) }
    case .depthwise(let d): d.backwardWeight(dy, x, into: dw, T.self)
    case .winograd(let winograd): winograd.backwardWeight(dy, x, into: dw, T.self)
    case .shiftedGrid where weightGradientByColumns: columnWeightGradient(dy, x, into: dw, T.self)
    case .shiftedGrid(let grid): grid.backwardWeight(dy, x, into: dw, T.self)
    case .phaseGrid(let grid) where usesVectorKernels(T.self):
      grid.backward(dy, input: x, weight: nil, inputGradient: nil, weightGradient: dw)
    case .pointwise: pointwiseBackwardWeight(dy, x, into: dw, T.self, normalizing: nil)
    case .phaseGrid, .im2col: columnWeightGradient(dy, x, into: dw, T.self)
    }
  }

  /// The weight gradient as a GEMM of the output gradient with each chunk's im2col matrix.
  private func columnWeightGradient<T: TensorScalar>(_ dy: Tensor, _ x: Tensor, into dw: Tensor, _: T.Type) {
    let ldy = g.batch * g.outputPlane, pdy = dy.base(T.self), pdw = dw.base(T.self)
    forEachColumnChunk(of: x, imagesPerChunk, T.self) { group, first, images, col in
      T.gemm(
        transposeA: false, transposeB: true, m: g.groupOutputs, n: g.patchSize, k: images * g.outputPlane, alpha: 1,
        a: pdy + group * g.groupOutputs * ldy + first * g.outputPlane, lda: ldy, b: col, ldb: images * g.outputPlane,
        beta: first == 0 ? 0 : 1, c: pdw + group * g.groupOutputs * g.patchSize, ldc: g.patchSize)
    }
  }

  /// Calls `body(group, firstImage, images, columns)` with the im2col matrix of `x` for each group
  /// and chunk of `chunk` images in turn, in one buffer.
  private func forEachColumnChunk<T: TensorScalar>(
    of x: Tensor, _ chunk: Int, _: T.Type, _ body: (Int, Int, Int, UnsafeMutablePointer<T>) -> Void
  ) {
    let layout = PlaneLayout(x), px = x.base(T.self)
    withColumns(chunk, T.self) { col in
      for group in 0..<g.groups {
        for first in stride(from: 0, to: g.batch, by: chunk) {
          let images = min(chunk, g.batch - first)
          im2col(g, input: px, layout: layout, firstChannel: group * g.groupInputs, firstImage: first, images: images, col: col)
          body(group, first, images, col)
        }
      }
    }
  }

  /// Whether the two gradients share work, so that ``backward(_:_:_:inputGradient:weightGradient:_:normalizing:)``
  /// computes them faster together than apart: the shifted grid with few outputs per group, whose
  /// output gradient is laid on the grid once for both, and Winograd, which takes each chunk of the
  /// output gradient through both gradients while it is in cache (and, for the pre-activation unit,
  /// normalises the input in its transform instead of as a tensor of its own).
  var sharesGradientWork: Bool {
    if case .winograd = method { return true }
    return shiftedGrid?.usesShiftedGradient ?? false
  }

  /// Both gradients at once, where ``sharesGradientWork``. With `affine`, `x` is normalised on its way
  /// into the grid (the pre-activation unit) and `dx` is the normalised map's gradient.
  func backward<T: TensorScalar>(
    _ dy: Tensor, _ x: Tensor, _ w: Tensor, inputGradient dx: Tensor, weightGradient dw: Tensor, _: T.Type,
    normalizing affine: (scale: [T], shift: [T])? = nil
  ) {
    if case .winograd(let winograd) = method {
      return winograd.backward(dy, x, w, inputGradient: dx, weightGradient: dw, T.self, normalizing: affine)
    }
    guard let grid = shiftedGrid, grid.usesShiftedGradient else {
      preconditionFailure("internal: a joint backward pass for a plan whose gradients share no work")
    }
    grid.backwardByShiftedGradient(dy, input: x, weight: w, inputGradient: dx, weightGradient: dw, T.self, normalizing: affine)
  }

  /// Both gradients: at once where ``sharesGradientWork``, else the input gradient and then the
  /// weight gradient. The bits are the same either way. With `affine` (the pre-activation unit; only
  /// where ``gradientsNormalizeInput``), `x` is normalised on its way into the grid or the chunks.
  func gradients<T: TensorScalar>(
    _ dy: Tensor, _ x: Tensor, _ w: Tensor, inputGradient dx: Tensor, weightGradient dw: Tensor, _: T.Type,
    normalizing affine: (scale: [T], shift: [T])? = nil
  ) {
    if case .pointwise = method {
      pointwiseBackwardInput(dy, w, into: dx, T.self)
      return pointwiseBackwardWeight(dy, x, into: dw, T.self, normalizing: affine)
    }
    guard sharesGradientWork else {
      precondition(affine == nil, "internal: a normalised input for a plan whose gradients share no work")
      backwardInput(dy, w, into: dx, T.self)
      return backwardWeight(dy, x, into: dw, T.self)
    }
    backward(dy, x, w, inputGradient: dx, weightGradient: dw, T.self, normalizing: affine)
  }

  /// Runs `body` with an im2col buffer for `chunk` images, freed when it returns.
  private func withColumns<T: TensorScalar>(_ chunk: Int, _: T.Type, _ body: (UnsafeMutablePointer<T>) -> Void) {
    let columns = Tensor(uninitializedShape: [g.patchSize * chunk * g.outputPlane], dtype: T.dtype)
    body(columns.base(T.self))
    withExtendedLifetime(columns) {}
  }

  private func fillZeros<T: TensorScalar>(_ t: Tensor, _: T.Type) {
    t.base(T.self).update(repeating: 0, count: t.count)
  }
}
