import CKernels
/// The pointwise method (1x1, stride 1, no padding): the channel-major input, one row of
/// `batch · height · width` columns per channel, is the GEMM operand itself.
///
/// Where the batch's pixels outnumber the channels eight times or more (``pointwiseInChunks``; every
/// bottleneck of a CIFAR DenseNet), the weight gradient runs along the pixels in chunks of columns,
/// and the pre-activation unit's normalisation and ReLU (`normalizing`) are applied chunk by chunk
/// into a block that the product reads while it is in cache. The unit then keeps no normalised map,
/// and its forward pass reads its input once instead of writing the map and reading it back: for
/// DenseNet that map is the quadratic part of its memory and the widest pass of a step.
extension ConvolutionPlan {
  /// Whether the weight gradient runs in chunks of columns and the unit may normalise its input on
  /// the way into the products (see ``normalizesInput``): pointwise with at least eight pixels per
  /// channel on either side, so that a chunk of a few hundred columns makes a product of full speed.
  var pointwiseInChunks: Bool {
    guard case .pointwise = method else { return false }
    return g.batch * g.outputPlane >= 8 * max(g.groupInputs, g.groupOutputs)
  }

  /// Columns per chunk: a normalised block of about 128 KiB (so that it and OpenBLAS's packed copy
  /// of it stay in a core's own cache), and at least 256, for products long enough to run at full
  /// speed; a multiple of 16.
  private func chunkColumns<T: TensorScalar>(_: T.Type) -> Int {
    max(256, (1 << 17) / (MemoryLayout<T>.size * g.inputChannels)) / 16 * 16
  }

  /// `y = w · x`, one product per group; with `affine` (only where ``pointwiseInChunks``), of
  /// max(x · scale + shift, 0), normalised chunk by chunk.
  ///
  /// Where ``pointwiseInChunks`` the products run chunk by chunk with `affine` or without: OpenBLAS's
  /// sums for a column depend on the size of the product it belongs to, so the same chunks give
  /// the normalised unit the bits of the map normalised first.
  func pointwiseForward<T: TensorScalar>(
    _ x: Tensor, _ w: Tensor, into y: Tensor, _: T.Type, normalizing affine: (scale: [T], shift: [T])?
  ) {
    precondition(affine == nil || pointwiseInChunks, "internal: a normalised pointwise product out of chunks")
    let x = pointwiseOperand(x), n = g.batch * g.outputPlane, ldx = max(PlaneLayout(x).channelStride, n)
    let px = x.base(T.self), pw = w.base(T.self), py = y.base(T.self)
    guard pointwiseInChunks else {
      for group in 0..<g.groups {
        T.gemm(
          transposeA: false, transposeB: false, m: g.groupOutputs, n: n, k: g.groupInputs, alpha: 1,
          a: pw + group * g.groupOutputs * g.patchSize, lda: g.patchSize, b: px + group * g.groupInputs * ldx, ldb: ldx,
          beta: 0, c: py + group * g.groupOutputs * n, ldc: n)
      }
      return
    }
    let columns = chunkColumns(T.self), chunks = (n + columns - 1) / columns
    withBlocks(affine == nil ? 0 : columns, T.self) { blocks in
      Parallel.run(chunks, byThread: { c, thread in
        let start = c * columns, count = min(columns, n - start)
        let (b, ldb) = operand(px + start, ldx, count, affine, block: blocks + thread * g.inputChannels * columns)
        for group in 0..<g.groups {
          T.blasGemm(
            transposeA: false, transposeB: false, m: g.groupOutputs, n: count, k: g.groupInputs, alpha: 1,
            a: pw + group * g.groupOutputs * g.patchSize, lda: g.patchSize, b: b + group * g.groupInputs * ldb, ldb: ldb,
            beta: 0, c: py + group * g.groupOutputs * n + start, ldc: n)
        }
      })
    }
  }

  /// `dx = wᵀ · dy`, one product per group: by ``panelBackwardInput(_:_:into:columns:pitch:)``
  /// where the vector kernels run, the layer has at most 128 outputs a group (one slab of the
  /// kernel's depth) and the batch's pixels fill a block of columns; else by OpenBLAS.
  func pointwiseBackwardInput<T: TensorScalar>(_ dy: Tensor, _ w: Tensor, into dx: Tensor, _: T.Type) {
    let n = g.batch * g.outputPlane, ldx = max(PlaneLayout(dx).channelStride, n)
    if usesVectorKernels(T.self) && g.groupOutputs <= 128 && n >= Self.panelColumns {
      return panelBackwardInput(dy, w, into: dx, columns: n, pitch: ldx)
    }
    let pdy = dy.base(T.self), pw = w.base(T.self), pdx = dx.base(T.self)
    for group in 0..<g.groups {
      T.gemm(
        transposeA: true, transposeB: false, m: g.groupInputs, n: n, k: g.groupOutputs, alpha: 1,
        a: pw + group * g.groupOutputs * g.patchSize, lda: g.patchSize, b: pdy + group * g.groupOutputs * n, ldb: n,
        beta: 0, c: pdx + group * g.groupInputs * ldx, ldc: ldx)
    }
  }

  /// Columns of `dy` per block of ``panelBackwardInput(_:_:into:columns:pitch:)``.
  private static let panelColumns = 128

  /// The input gradients that ``panelBackwardInput(_:_:into:columns:pitch:)`` stores past the
  /// caches: those of 16 MiB or more, which no core's cache holds until the normalisation's
  /// backward pass reads them (DenseNet-BC-100's first two blocks at batch 64); those below, such as
  /// ResNet-20 DSConv's 8 MiB, a last-level cache may (docs/performance.md#pointwise-input).
  private static let streamingBytes = 16 << 20

  /// `dx = wᵀ · dy` in Float32 through the Winograd products' register kernel
  /// (`reprise_pointwise_products_f32`), the columns split among the threads, each sum the ordered
  /// fused multiply-adds that OpenBLAS's kernels add for a depth this short. OpenBLAS first clears
  /// dx in a pass of its own and then adds the product to it; here dx is written once, and where it
  /// is larger than the caches (a DenseNet's first block: 216 channels of 65536 pixels, 56 MB),
  /// past them. dy's rows, a channel of the batch apart, are copied a block of columns at a time
  /// into rows an odd number of cache lines apart: in place, the kernel's column block down the
  /// depth fell into one set of the L1 cache and was read from memory for every 6 rows of dx
  /// (docs/performance.md#pointwise-input).
  /// `n` is the batch's pixels, dy's row length, and `ldx` the distance between dx's rows.
  private func panelBackwardInput(_ dy: Tensor, _ w: Tensor, into dx: Tensor, columns n: Int, pitch ldx: Int) {
    let (rows, depth, width) = (g.groupInputs, g.groupOutputs, Self.panelColumns), pitch = width + 16
    let pdy = dy.base(Float.self), pw = w.base(Float.self), pdx = dx.base(Float.self)
    let panel = Tensor(uninitializedShape: [reprise_winograd_weight_plane(rows, depth)], dtype: .float32)
    let blocks = Tensor(uninitializedShape: [Parallel.threadCount * depth * pitch], dtype: .float32)
    let streaming: Int32 = g.inputChannels * n * MemoryLayout<Float>.size >= Self.streamingBytes ? 1 : 0
    // Each column's sums are its own, so the pieces decide only the waits at the job's end: pieces
    // of two blocks leave the thread done first waiting for at most two blocks of the other's.
    let pieces = max(1, n / (2 * width))
    for group in 0..<g.groups {
      reprise_pack_transposed_panel_f32(pw + group * depth * g.patchSize, g.patchSize, rows, depth, panel.base(Float.self))
      Parallel.run(pieces, byThread: { p, thread in
        let first = n * p / pieces / 32 * 32, end = p == pieces - 1 ? n : n * (p + 1) / pieces / 32 * 32
        let block = blocks.base(Float.self) + thread * depth * pitch
        for start in stride(from: first, to: end, by: width) {
          let count = min(width, end - start)
          for d in 0..<depth { (block + d * pitch).update(from: pdy + (group * depth + d) * n + start, count: count) }
          reprise_pointwise_products_f32(
            panel.base(Float.self), rows, depth, block, pitch, pdx + group * rows * ldx + start, ldx, count, streaming)
        }
      })
    }
    withExtendedLifetime((panel, blocks)) {}
  }

  /// `dw = dy · xᵀ`, one product per group; with `affine` (only where ``pointwiseInChunks``), of
  /// max(x · scale + shift, 0), recomputed chunk by chunk.
  ///
  /// Where ``pointwiseInChunks``, the columns are cut into ranges (up to four per thread, fixed by
  /// the thread count, so that a thread that starts late takes fewer, and shrinking towards the end
  /// of each thread's share); one thread sums a range's chunk products in order into a weight
  /// gradient of the range's own, and these are added in range order. The chunks do not depend on
  /// `affine`, so the bits are the same with it as for the map normalised first, and depend on the
  /// thread count only. Float32 with the vector kernels takes
  /// the Winograd products' register kernel for the chunks: see ``chunkWeightProducts(_:_:_:_:_:_:_:_:panel:)``.
  func pointwiseBackwardWeight<T: TensorScalar>(
    _ dy: Tensor, _ x: Tensor, into dw: Tensor, _: T.Type, normalizing affine: (scale: [T], shift: [T])?
  ) {
    precondition(affine == nil || pointwiseInChunks, "internal: a normalised pointwise weight gradient out of chunks")
    let x = pointwiseOperand(x), n = g.batch * g.outputPlane, ldx = max(PlaneLayout(x).channelStride, n)
    let pdy = dy.base(T.self), px = x.base(T.self), pdw = dw.base(T.self)
    guard pointwiseInChunks else {
      for group in 0..<g.groups {
        T.gemm(
          transposeA: false, transposeB: true, m: g.groupOutputs, n: g.groupInputs, k: n, alpha: 1,
          a: pdy + group * g.groupOutputs * n, lda: n, b: px + group * g.groupInputs * ldx, ldb: ldx,
          beta: 0, c: pdw + group * g.groupOutputs * g.patchSize, ldc: g.patchSize)
      }
      return
    }
    let columns = chunkColumns(T.self), kernel = usesVectorKernels(T.self)
    let pieces = max(1, min(4 * Parallel.threadCount, n / (2 * columns)))
    // Each thread's ranges shrink towards the end of its share, so that the thread done first waits
    // for at most the other's smallest range (`Parallel.shrinkingPieces`); bounds on 16 columns,
    // the last range taking the columns past the last multiple of 16.
    var bounds = Parallel.shrinkingPieces(n / 16, pieces: pieces).map { $0 * 16 }
    bounds[pieces] = n
    // The kernel's sums are transposed, one set per range; OpenBLAS's first range sums into dw.
    let partial = Tensor(uninitializedShape: [(kernel ? pieces : pieces - 1) * dw.count], dtype: T.dtype), ppartial = partial.base(T.self)
    let panelCount = kernel ? reprise_winograd_panel_count(g.groupOutputs, columns) : 0
    let panels = Tensor(uninitializedShape: [Parallel.threadCount * panelCount], dtype: .float32)
    withBlocks(affine == nil ? 0 : columns, T.self) { blocks in
      Parallel.run(pieces, byThread: { p, thread in
        let target = kernel ? ppartial + p * dw.count : p == 0 ? pdw : ppartial + (p - 1) * dw.count
        let first = bounds[p], end = bounds[p + 1]
        for start in stride(from: first, to: end, by: columns) {
          let count = min(columns, end - start)
          let (b, ldb) = operand(px + start, ldx, count, affine, block: blocks + thread * g.inputChannels * columns)
          if kernel {
            chunkWeightProducts(
              pdy + start, n, b, ldb, count, into: target, accumulating: start != first,
              panel: panels.base(Float.self) + thread * panelCount)
            continue
          }
          for group in 0..<g.groups {
            T.blasGemm(
              transposeA: false, transposeB: true, m: g.groupOutputs, n: g.groupInputs, k: count, alpha: 1,
              a: pdy + group * g.groupOutputs * n + start, lda: n, b: b + group * g.groupInputs * ldb, ldb: ldb,
              beta: start == first ? 0 : 1, c: target + group * g.groupOutputs * g.patchSize, ldc: g.patchSize)
          }
        }
      })
    }
    guard kernel else {
      Parallel.addPieces(ppartial, pieces: pieces - 1, count: dw.count, into: pdw)
      return withExtendedLifetime(partial) {}
    }
    Parallel.addPieces(ppartial + dw.count, pieces: pieces - 1, count: dw.count, into: ppartial)
    let (inputs, outputs) = (g.groupInputs, g.groupOutputs)
    for group in 0..<g.groups {
      let sums = ppartial + group * inputs * outputs, gradient = pdw + group * outputs * g.patchSize
      for o in 0..<outputs { for i in 0..<inputs { gradient[o * g.patchSize + i] = sums[i * outputs + o] } }
    }
    withExtendedLifetime((partial, panels)) {}
  }

  /// One chunk's weight gradient in Float32, transposed: for each group, sums[i][o] (+)= Σ_t x[i][t]
  /// · dy[o][t] over the chunk's `count` columns, x the chunk's operand (rows `ldb` apart) and dy
  /// from `dy` (rows `ldy` apart), by `reprise_pointwise_weight_products_f32`, which transposes the
  /// chunk of dy into `panel` and runs the Winograd products' register kernel with x's rows as the
  /// broadcast side. Transposing dy (a DenseNet bottleneck's 48 outputs) costs a pass over a few
  /// thousand floats per chunk; the other way round, x (up to 342 channels) would be transposed. The
  /// sums add the chunk's columns in order onto the last chunk's, through memory: the bits of one
  /// ordered sum over the range.
  private func chunkWeightProducts<T: TensorScalar>(
    _ dy: UnsafePointer<T>, _ ldy: Int, _ b: UnsafePointer<T>, _ ldb: Int, _ count: Int, into sums: UnsafeMutablePointer<T>,
    accumulating: Bool, panel: UnsafeMutablePointer<Float>
  ) {
    let (inputs, outputs) = (g.groupInputs, g.groupOutputs)
    for group in 0..<g.groups {
      reprise_pointwise_weight_products_f32(
        floats(b + group * inputs * ldb), ldb, inputs, floats(dy + group * outputs * ldy), ldy, outputs, count,
        floats(sums + group * inputs * outputs), outputs, accumulating ? 1 : 0, panel)
    }
  }

  /// A chunk's operand and its row pitch: the input's `count` columns from `x` (rows `ldx` apart)
  /// in place, or with `affine` max(x · scale + shift, 0) of them written into `block`, rows `count`
  /// apart. The expression is ``batchNormalized(_:mean:variance:weight:bias:epsilon:applyingReLU:ceiling:)``'s.
  private func operand<T: TensorScalar>(
    _ x: UnsafePointer<T>, _ ldx: Int, _ count: Int, _ affine: (scale: [T], shift: [T])?, block: UnsafeMutablePointer<T>
  ) -> (UnsafePointer<T>, Int) {
    guard let affine else { return (x, ldx) }
    if usesVectorKernels(T.self) {
      affine.scale.withUnsafeBufferPointer { scale in
        affine.shift.withUnsafeBufferPointer { shift in
          reprise_normalize_columns_f32(
            floats(x), ldx, count, g.inputChannels, floats(scale.baseAddress!), floats(shift.baseAddress!), floats(block))
        }
      }
      return (UnsafePointer(block), count)
    }
    for c in 0..<g.inputChannels {
      let source = x + c * ldx, row = block + c * count, scale = affine.scale[c], shift = affine.shift[c]
      for i in 0..<count { row[i] = Swift.max(source[i] * scale + shift, 0) }
    }
    return (UnsafePointer(block), count)
  }

  /// Runs `body` with a block of `columns` columns of every input channel for each thread (none when
  /// `columns` is 0), freed when it returns.
  private func withBlocks<T: TensorScalar>(_ columns: Int, _: T.Type, _ body: (UnsafeMutablePointer<T>) -> Void) {
    let blocks = Tensor(uninitializedShape: [Parallel.threadCount * g.inputChannels * columns], dtype: T.dtype)
    body(blocks.base(T.self))
    withExtendedLifetime(blocks) {}
  }

  /// The pointwise GEMM's operand: `x` itself when its images lie next to each other within each
  /// channel (channel-major, or a channel range of it), else a channel-major copy.
  private func pointwiseOperand(_ x: Tensor) -> Tensor {
    g.batch == 1 || PlaneLayout(x).imageStride == g.height * g.width ? x : x.channelMajor()
  }
}
