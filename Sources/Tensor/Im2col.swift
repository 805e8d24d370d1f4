/// The im2col and col2im transforms behind the GEMM convolution.
///
/// The column matrix of one group and a chunk of images has `patchSize` rows, one per (input
/// channel, kernel row, kernel column), and `images * outputPlane` columns, one per output pixel of
/// every image in the chunk, so one GEMM covers the whole chunk and its result is channel-major.

/// Fills `col` from the input planes of channels `firstChannel...` for images `firstImage...`.
func im2col<T: TensorScalar>(
  _ g: ConvolutionGeometry, input x: UnsafePointer<T>, layout: PlaneLayout,
  firstChannel: Int, firstImage: Int, images: Int, col: UnsafeMutablePointer<T>
) {
  let kk = g.kernelHeight * g.kernelWidth
  let columns = images * g.outputPlane
  Parallel.forRanges(g.patchSize, costPerItem: columns) { rows in
    for row in rows {
      let c = row / kk, ky = row % kk / g.kernelWidth, kx = row % g.kernelWidth
      let dy = ky * g.dilation.height - g.padding.height, dx = kx * g.dilation.width - g.padding.width
      var out = col + row * columns
      for n in 0..<images {
        let plane = x + (firstImage + n) * layout.imageStride + (firstChannel + c) * layout.channelStride
        for oy in 0..<g.outputHeight {
          let iy = oy * g.stride.height + dy
          if iy < 0 || iy >= g.height {
            out.update(repeating: 0, count: g.outputWidth)
          } else {
            copyRow(plane + iy * g.width, g, dx, out)
          }
          out += g.outputWidth
        }
      }
    }
  }
}

/// One output row of im2col: input pixels `ox * stride + dx` of a row, zero outside it.
@inline(__always)
private func copyRow<T: TensorScalar>(_ row: UnsafePointer<T>, _ g: ConvolutionGeometry, _ dx: Int, _ out: UnsafeMutablePointer<T>) {
  let s = g.stride.width, w = g.width
  // The first and one-past-last output columns whose input column lies inside the row.
  let lo = dx >= 0 ? 0 : min(g.outputWidth, (-dx + s - 1) / s)
  let hi = max(lo, min(g.outputWidth, w - dx <= 0 ? 0 : (w - dx - 1) / s + 1))
  for ox in 0..<lo { out[ox] = 0 }
  if s == 1 {
    let source = row + dx
    for ox in lo..<hi { out[ox] = source[ox] }  // rows are short: a loop beats a memmove call
  } else {
    for ox in lo..<hi { out[ox] = row[ox * s + dx] }
  }
  for ox in hi..<g.outputWidth { out[ox] = 0 }
}

/// Adds the columns of `col` back onto the input-gradient planes (the transpose of ``im2col``).
///
/// Work is split by input channel, so each plane is written by one thread in a fixed order.
func col2im<T: TensorScalar>(
  _ g: ConvolutionGeometry, col: UnsafePointer<T>, gradInput dx: UnsafeMutablePointer<T>, layout: PlaneLayout,
  firstChannel: Int, firstImage: Int, images: Int
) {
  let kk = g.kernelHeight * g.kernelWidth
  let columns = images * g.outputPlane
  let s = g.stride.width
  Parallel.forRanges(g.groupInputs, costPerItem: kk * columns) { channels in
    for c in channels {
      for k in 0..<kk {
        let ky = k / g.kernelWidth, kx = k % g.kernelWidth
        let dy = ky * g.dilation.height - g.padding.height, dxOff = kx * g.dilation.width - g.padding.width
        let lo = dxOff >= 0 ? 0 : min(g.outputWidth, (-dxOff + s - 1) / s)
        let hi = max(lo, min(g.outputWidth, g.width - dxOff <= 0 ? 0 : (g.width - dxOff - 1) / s + 1))
        var source = col + (c * kk + k) * columns
        for n in 0..<images {
          let plane = dx + (firstImage + n) * layout.imageStride + (firstChannel + c) * layout.channelStride
          for oy in 0..<g.outputHeight {
            let iy = oy * g.stride.height + dy
            if iy >= 0 && iy < g.height {
              let row = plane + iy * g.width + dxOff
              if s == 1 {
                for ox in lo..<hi { row[ox] += source[ox] }
              } else {
                for ox in lo..<hi { row[ox * s] += source[ox] }
              }
            }
            source += g.outputWidth
          }
        }
      }
    }
  }
}
