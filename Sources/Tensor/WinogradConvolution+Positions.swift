import CKernels

/// The gradients of wide layers, split between the threads within each chunk of images instead of
/// by images.
///
/// Split by images, each share of the batch sums its weight-gradient products into sums of its
/// own, P x outputs x channels floats, which are added at the end. For wide layers those sums
/// outgrow what memory and the final addition can bear (21 MB a share for ShakeNet's 384 channels
/// on 8x8 planes), so the threads get one share each and nothing to balance: the thread done first
/// waits for the other's whole remainder. The P products of a chunk are independent, though, and
/// each adds into its own dU[ξ]: split by position, the threads share one set of sums, take the
/// chunks together in order (their transforms split by rows, their products by position) and end
/// within about one position's product of each other. The sums then run over the tiles in the same
/// order whatever the thread count. The input gradient's products go in the same job by blocks of
/// channels, so that each thread reads its blocks' rows of the transformed weights, as large as the
/// sums, once a chunk.
extension WinogradConvolution {
  /// Whether the gradients of `g` with `tiling` are split by position: where its transformed
  /// sums pass 4 MB, so that the 16 MB bound on the shares' sums leaves two threads fewer than two
  /// shares each. It does not depend on the thread count, so one thread takes the same chunks.
  static func splitsByPosition(_ g: ConvolutionGeometry, _ tiling: WinogradTiling) -> Bool {
    tiling.positions * g.outputChannels * g.inputChannels > 1 << 20
  }

  /// The weight gradient, and with `w` and `dx` the input gradient, split within each chunk (see
  /// above); the same results as ``backwardInput(_:_:into:_:)`` and
  /// ``backwardWeight(_:_:into:_:)``. Each chunk takes two jobs. The first transforms its data,
  /// split by rows: the output gradient's patches for the input gradient, its tiles for the weight
  /// gradient, and the input's patches. The second takes the weight gradient's products by position
  /// and the input gradient's by blocks of its channels, each block transformed back into `dx` by the
  /// thread that computed it: the input gradient's transformed weights are as large as the sums, and
  /// each thread reads only its blocks' rows of them once a chunk (split by images, every chunk read
  /// all of them).
  func gradientsByPosition<T: TensorScalar>(
    _ dy: Tensor, _ x: Tensor, _ w: Tensor?, normalizing affine: (scale: [T], shift: [T])?,
    scalingPlanes planeScale: UnsafePointer<Float>?, inputGradient dx: InputGradientTarget?, weightGradient dw: Tensor
  ) {
    let (c, o) = (g.inputChannels, g.outputChannels), (tile, positions) = (gradientTiling.tile, gradientTiling.positions)
    let threads = Parallel.threadCount, plain: (scale: [T], shift: [T])? = nil
    // Chunks whose transformed matrices (P x rows x tiles, three or four of them) hold about 2 MB
    // each: 8 images of 384 channels on 8x8 planes, 4 of 192 on 16x16. Twice that on 8x8 planes
    // took longer (chunks as large as the sums 1.4-1.5 times as long), and so did half that on
    // 16x16 planes (docs/performance.md#wide-gradients).
    let tiling = WinogradTiling(g, tile: tile, minimumChunks: 1, valuesPerChannel: (1 << 19) / max(o, c))
    let t = tiling.tileCount, streams = (o: reprise_winograd_stream(o, t), c: reprise_winograd_stream(c, t))
    let u = dx == nil ? nil : w.map { transformedWeights($0, reversed: true, tiling) }, pu = u?.base(Float.self)
    // Blocks of the input gradient's channels of about one weight-gradient position's work (c/P
    // rows), but two of the products' register blocks of 6 rows at least.
    let blockRows = pu == nil ? 0 : max(12, (c + positions - 1) / positions)
    let blocks = pu == nil ? 0 : (c + blockRows - 1) / blockRows
    let scratchCount = reprise_winograd_scratch_count(g.height, g.width, tile), panelCount = reprise_winograd_panel_count(c, t)
    let productCount = positions * reprise_winograd_stream(blockRows, t)
    let patches = Tensor(uninitializedShape: [pu == nil ? 0 : positions * streams.o], dtype: .float32)
    let pd = patches.base(Float.self)
    let m = Tensor(uninitializedShape: [positions * streams.o], dtype: .float32), pm = m.base(Float.self)
    let v = Tensor(uninitializedShape: [positions * streams.c], dtype: .float32), pv = v.base(Float.self)
    let sums = Tensor(uninitializedShape: [positions * o * c], dtype: .float32), ps = sums.base(Float.self)
    let perThreadCount = scratchCount + panelCount + productCount
    let perThread = Tensor(uninitializedShape: [threads * perThreadCount], dtype: .float32)
    typealias Pointer = UnsafeMutablePointer<Float>
    func buffers(_ thread: Int) -> (scratch: Pointer, panel: Pointer, products: Pointer) {
      let base = perThread.base(Float.self) + thread * perThreadCount
      return (base, base + scratchCount, base + scratchCount + panelCount)
    }
    let pdy = dy.base(Float.self), gl = PlaneLayout(dy), chunks = tiling.chunks(g.batch)
    let rows = (pu == nil ? 0 : o) + o + c, rowPieces = min(rows, 8 * threads)
    for k in 0..<chunks {
      let first = g.batch * k / chunks, images = g.batch * (k + 1) / chunks - first
      // Rows in pieces of a few planes each, claimed as the threads finish.
      Parallel.run(rowPieces, byThread: { p, thread in
        let piece = rows * p / rowPieces..<rows * (p + 1) / rowPieces, scratch = buffers(thread).scratch
        // The piece's rows among `count` rows from `start` of the job's, counted from 0.
        func part(_ start: Int, _ count: Int) -> Range<Int> {
          let r = piece.clamped(to: start..<start + count)
          return r.lowerBound - start..<r.upperBound - start
        }
        let (gradientPatches, tiles) = pu == nil ? (0..<0, part(0, o)) : (part(0, o), part(o, o))
        let channels = part(rows - c, c)
        if !gradientPatches.isEmpty {
          transformPatches(
            dy, channels: gradientPatches, first: first, images: images, normalizing: plain, tiling,
            into: pd + gradientPatches.lowerBound * t, stream: streams.o, scratch)
        }
        if !tiles.isEmpty {
          reprise_winograd_output_gradient_f32(
            pdy + first * gl.imageStride + tiles.lowerBound * gl.channelStride, gl.channelStride, gl.imageStride, tiles.count,
            images, g.height, g.width, tile, pm + tiles.lowerBound * t, t, streams.o, scratch)
        }
        if !channels.isEmpty {
          transformPatches(
            x, channels: channels, first: first, images: images, normalizing: affine, scalingPlanes: planeScale, tiling,
            into: pv + channels.lowerBound * t, stream: streams.c, scratch)
        }
      })
      let accumulate: Int32 = k == 0 ? 0 : 1, columns = tiling.columns(images)
      Parallel.run(blocks + positions, byThread: { item, thread in
        let b = buffers(thread)
        if let pu, let dx, item < blocks {  // channels of dx: U_rev[ξ] D[ξ] for every ξ, transformed back
          let block = item * blockRows..<min(c, (item + 1) * blockRows)
          reprise_winograd_products_f32(positions, pu, c, o, block.lowerBound, block.count, 0, o, pd, b.products, columns, t, 0)
          deliverInputGradient(
            b.products, rows: block, into: dx, scalingPlanes: planeScale, tiling, first: first, images: images, b.scratch)
          return
        }
        let xi = item - blocks  // dU[ξ] (+)= M[ξ] V[ξ]ᵀ
        reprise_winograd_transposed_products_f32(
          1, pm + xi * streams.o, o, pv + xi * streams.c, c, columns, t, ps + xi * o * c, c, accumulate, b.panel)
      })
    }
    weightGradient(fromSums: ps, tiling, into: dw)
    withExtendedLifetime((u, patches, m, v, sums, perThread)) {}
  }
}
