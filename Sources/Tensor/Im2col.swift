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
      let (lo, hi) = insideColumns(g, dx)  // the same for every image and output row: computed once
      var out = col + row * columns
      for n in 0..<images {
        let plane = x + (firstImage + n) * layout.imageStride + (firstChannel + c) * layout.channelStride
        for oy in 0..<g.outputHeight {
          let iy = oy * g.stride.height + dy
          if iy < 0 || iy >= g.height {
            out.update(repeating: 0, count: g.outputWidth)
          } else {
            copyRow(plane + iy * g.width, g, dx, lo, hi, out)
          }
          out += g.outputWidth
        }
      }
    }
  }
}

/// The first and one-past-last output columns whose input column `ox * stride + dx` lies inside a row.
@inline(__always)
private func insideColumns(_ g: ConvolutionGeometry, _ dx: Int) -> (lo: Int, hi: Int) {
  let s = g.stride.width, w = g.width
  let lo = dx >= 0 ? 0 : min(g.outputWidth, (-dx + s - 1) / s)
  return (lo, max(lo, min(g.outputWidth, w - dx <= 0 ? 0 : (w - dx - 1) / s + 1)))
}

/// One output row of im2col: input pixels `ox * stride + dx` of a row for `ox` in `lo..<hi`, zero
/// outside.
@inline(__always)
private func copyRow<T: TensorScalar>(
  _ row: UnsafePointer<T>, _ g: ConvolutionGeometry, _ dx: Int, _ lo: Int, _ hi: Int, _ out: UnsafeMutablePointer<T>
) {
  let s = g.stride.width
  for ox in 0..<lo { out[ox] = 0 }
  if s == 1 {
    let source = row + dx
    for ox in lo..<hi { out[ox] = source[ox] }  // rows are short: a loop beats a memmove call
  } else {
    var source = row + lo * s + dx  // a stepped pointer: no overflow-checked index per element
    for ox in lo..<hi {
      out[ox] = source.pointee
      source += s
    }
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
        let (lo, hi) = insideColumns(g, dxOff)
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
                var target = row + lo * s
                for ox in lo..<hi {
                  target.pointee += source[ox]
                  target += s
                }
              }
            }
            source += g.outputWidth
          }
        }
      }
    }
  }
}
