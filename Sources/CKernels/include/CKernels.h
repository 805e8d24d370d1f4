// Kernels written in C for the one thing Swift cannot express portably: AVX2 and FMA instructions
// chosen at run time. Swift code compiled for baseline x86-64 gets 4-wide SSE and no fused
// multiply-add; these functions carry their own target attributes and are called only after
// `reprise_kernels_available()` said yes. Every other kernel of Reprise is Swift. Beside them sits
// one system call that Swift cannot make, being variadic in C: mremap, for the allocator.
#ifndef REPRISE_CKERNELS_H
#define REPRISE_CKERNELS_H

#include <stdbool.h>

/// Whether this processor has AVX2 and FMA, which the kernels below require.
bool reprise_kernels_available(void);

/// Whether the convolution kernels below use their AVX-512 tiles, and the Winograd products the 32
/// registers of AVX-512 for their 8-lane sums (the processor has AVX-512 F, VL and DQ, and they were
/// not turned off). They give the same results as the AVX2 tiles.
bool reprise_wide_kernels_enabled(void);

/// Turns the AVX-512 tiles on (where the processor has them) or off, for tests that check both;
/// returns the previous setting. Not for use while a kernel runs.
bool reprise_set_wide_kernels_enabled(bool enabled);

/// The number of floats `reprise_pack_taps_f32` writes: `outputs` rounded up to a multiple of 6,
/// times `channels` times `taps`.
long reprise_packed_taps_count(long outputs, long channels, long taps);

/// Packs the weights `w(o, c, k) = weights[o * outputStride + c * channelStride + k * tapStride]`
/// for `reprise_shifted_convolution_f32`: tiles of 6 outputs, each [taps][channels][6], the last
/// tile padded with zeros.
void reprise_pack_taps_f32(
  const float *weights, long outputs, long channels, long taps, long outputStride, long channelStride,
  long tapStride, float *packed);

/// A stride-1 convolution computed directly on a padded grid, one output row at a time:
///
///   output(o, row r, column j) = sum over k < taps and c < channels of
///     w(o, c, k) * grid[c * gridChannelStride + t(r) + j + offsets[k]],
///   t(r) = gridOrigin + (r / rowsPerImage) * gridImageStride + (r % rowsPerImage) * gridRowStride,
///
/// for rows r in [firstRow, firstRow + rowCount) and columns j < rowWidth, written to
/// output[o * outputChannelStride + (r / rowsPerImage) * outputImageStride + (r % rowsPerImage) *
/// rowWidth + j]. `packed` comes from `reprise_pack_taps_f32`. Every grid position read must lie in
/// the grid; nothing beyond a row's `rowWidth` columns is read or written.
///
/// `tapRanges` (NULL: every tap for every row) holds, for each row y < rowsPerImage of an image, a
/// range of taps [tapRanges[2y], tapRanges[2y + 1]) outside which every tap reads zeros for that
/// row (the rows of a kernel that fall on the padding above and below the image): the sum may skip
/// those taps. Skipped terms are products with zero, which leave a sum that starts at +0 unchanged,
/// so the results are the same bits for finite weights.
///
/// Each output element is one sum in the order (k, c), so the result does not depend on how the
/// rows are split between threads.
void reprise_shifted_convolution_f32(
  const float *grid, long gridChannelStride, long channels, const float *packed, long outputs,
  const long *offsets, long taps, const long *tapRanges, long firstRow, long rowCount, long rowsPerImage, long rowWidth,
  long gridImageStride, long gridRowStride, long gridOrigin, float *output, long outputImageStride,
  long outputChannelStride);

/// The weight gradient of that convolution over output rows [firstRow, firstRow + rowCount) of
/// `rowsPerImage` rows of `rowWidth` positions each, row r = n * rowsPerImage + y starting at
/// position n * gridImageStride + y * gridRowStride of the grid:
///
///   partial[(o * pairs + p) * 8 + lane] += the part in `lane` of the sum over the rows' positions t
///     of gradient[o * gradientChannelStride + t] * grid[rows[p] + t],
///
/// for o < outputs and p < pairs, where `rows[p]` is the offset in `grid` of input channel c shifted
/// by tap k (one pair (c, k) per p). The 8 lanes of each sum are kept apart, for the caller to add
/// in a fixed order; how the positions fall into lanes depends on the arguments alone. The margins
/// between the rows, which hold no outputs, may be read too: the gradient must be zero there.
void reprise_shifted_weight_gradient_f32(
  const float *gradient, long gradientChannelStride, long outputs, const float *grid, const long *rows, long pairs,
  long firstRow, long rowCount, long rowsPerImage, long rowWidth, long gridImageStride, long gridRowStride, float *partial);

/// Copies input plane `plane` (`height` x `width` floats, row-major) into its phases
/// (PhaseGrid.swift): phase k, with row and column remainders `remainders[2k]` and
/// `remainders[2k + 1]`, is the `phaseHeight` x `phaseWidth` plane at `out + k * phaseStride` whose
/// element (i, j) is the padded input's pixel (i·strideY + a, j·strideX + b), input pixel
/// (i·strideY + a - padTop, j·strideX + b - padLeft). Phase k's input pixels are its rows
/// [ranges[4k], ranges[4k] + ranges[4k + 1]) and columns [ranges[4k + 2], ranges[4k + 2] +
/// ranges[4k + 3]) (the caller's ranges, which must lie in the plane); everything else is zero.
/// `next`, when not NULL, is the plane the caller copies next: its lines are prefetched.
void reprise_phase_split_f32(
  const float *plane, long height, long width, long strideY, long strideX, long padTop, long padLeft,
  const long *remainders, const long *ranges, long phaseCount, long phaseHeight, long phaseWidth, float *out,
  long phaseStride, const float *next);

/// The inverse of `reprise_phase_split_f32` for an input gradient: writes input plane `plane`
/// (`height` x `width`) from its phases' values. `phaseIndex[a * strideX + b]` is the phase with
/// remainders (a, b), or -1 for none; phase k covers the rows and columns `ranges` gives it, as
/// there, and its values are [planes][rows][columns] from `values[k]`, this plane's block the
/// `planeIndex`th. Pixels no phase covers get zero.
void reprise_phase_merge_f32(
  float *plane, long height, long width, long strideY, long strideX, long padTop, long padLeft, const long *phaseIndex,
  const float *const *values, const long *ranges, long planeIndex);

/// Writes max(x · scale[c] + shift[c], 0) of `count` columns of each of `channels` rows of `x`
/// (`ldx` apart) into `block`, rows `count` apart: the product and the sum rounded apart, and the
/// maximum as Swift's `max(v, 0)`. The rows ahead are prefetched.
void reprise_normalize_columns_f32(
  const float *x, long ldx, long count, long channels, const float *scale, const float *shift, float *block);

/// Splits a row of `count` floats into its even-indexed elements at `even` and its odd-indexed ones
/// at `odd` (the two column phases of a stride-2 plane).
void reprise_split_columns_f32(const float *row, long count, float *even, float *odd);

/// to[2 j] = values[j] for j < count; the odd positions between are left as they are (the other
/// column phase's). Reads and writes nothing past to[2 count - 2].
void reprise_spread_columns_f32(const float *values, long count, float *to);

/// The floats of scratch space `reprise_depthwise_plane_f32` needs for an output plane of `height` x `width`.
long reprise_depthwise_scratch_count(long height, long width);

/// One plane of a depthwise convolution on a zero-padded grid of row pitch `pitch` (a strided one
/// on a grid of the padded plane's phases, see DepthwiseConvolution+Planes.swift):
///
///   output[y * width + x] = sum over t < taps of weights[t] * grid[y * pitch + x + offsets[t]]
///
/// for y < height, x < width, each sum in tap order. Every grid position read must exist.
void reprise_depthwise_plane_f32(
  const float *grid, long pitch, const float *weights, const long *offsets, long taps, long height, long width,
  float *output, float *scratch);

/// A depthwise convolution's geometry for the kernels below, which hold 8 channels of one image in
/// the lanes of a vector: the zero-padded input plane is a grid of `gridCount` vectors, `pitch` to a
/// row; input position i (row-major in the height x width plane) is grid vector inputIndex[i]; output
/// (y, x) reads, through tap t, grid vector (y · strideHeight) · pitch + x · strideWidth + offsets[t].
typedef struct {
  long height, width, outputHeight, outputWidth, strideHeight, strideWidth, pitch, gridCount, taps;
  const long *inputIndex;
  const long *offsets;
} RepriseLaneGeometry;

/// The depthwise convolution of `images` images and `lanes` (1 to 8) channels:
///
///   output plane (n, l)[y, x] = sum over t < taps of weights[8 t + l] · (input plane (n, l) at tap t)
///
/// each sum in tap order from 0 by fused multiply-adds (the bits of `reprise_depthwise_plane_f32`).
/// Plane (n, l) of the input starts at input + n · inputImageStride + l · inputLaneStride, dense,
/// likewise the output's. `grid` has room for 8 · gridCount floats and `buffer` for 8 · outputHeight
/// · outputWidth.
void reprise_depthwise_lanes_forward_f32(
  const RepriseLaneGeometry *geometry, const float *weights, const float *input, long inputLaneStride, long inputImageStride,
  float *output, long outputLaneStride, long outputImageStride, long lanes, long images, float *grid, float *buffer);

/// Its input gradient: each input position's sum over the taps and outputs that read it, in reverse
/// tap order from 0 by fused multiply-adds (the bits of the phase correlation of
/// DepthwiseConvolution+Planes.swift), written to the input gradient's planes, laid out like the
/// forward pass's input. Buffers as there.
void reprise_depthwise_lanes_input_gradient_f32(
  const RepriseLaneGeometry *geometry, const float *weights, const float *gradient, long gradientLaneStride,
  long gradientImageStride, float *inputGradient, long inputLaneStride, long inputImageStride, long lanes, long images,
  float *grid, float *buffer);

/// Its weight gradient: sums[8 t + l] += the sum over the images' positions of gradient · input at
/// tap t, image by image, in Float32 over blocks of rows of about 64 positions, each block's sum
/// added into the Float64 total. Buffers as there.
void reprise_depthwise_lanes_weight_gradient_f32(
  const RepriseLaneGeometry *geometry, const float *gradient, long gradientLaneStride, long gradientImageStride,
  const float *input, long inputLaneStride, long inputImageStride, long lanes, long images, double *sums, float *grid,
  float *buffer);

/// e^x for `count` floats (within 2 units in the last place; 0 below the smallest normal float).
void reprise_exp_f32(const float *x, float *y, long count);

/// Softmax (or, with `logarithm`, log-softmax) of each of `rows` contiguous rows of `length`
/// floats, computed stably (shifted by the row's maximum); `y` may be `x`. A row holding a NaN or
/// an infinity gives what the plain formula gives.
void reprise_softmax_rows_f32(const float *x, float *y, long rows, long length, bool logarithm);

/// The gradient of those rows from their outputs `y` and the output gradient:
/// softmax y (g - Σ g y), log-softmax g - e^y Σ g.
void reprise_softmax_backward_rows_f32(
  const float *y, const float *gradient, float *result, long rows, long length, bool logarithm);

/// GELU, x Φ(x) with Φ the standard normal CDF, for `count` floats (absolute error of Φ below 3e-7).
void reprise_gelu_f32(const float *x, float *y, long count);

/// Its gradient, g (Φ(x) + x φ(x)).
void reprise_gelu_backward_f32(const float *x, const float *gradient, float *result, long count);

/// The gradient of clamping to [lower, upper]: `gradient` where lower < x < upper, 0 elsewhere (the
/// ends included) and at NaN.
void reprise_clamp_backward_f32(const float *x, const float *gradient, float *result, long count, float lower, float upper);

// Winograd's F(2x2, 3x3) and F(4x4, 3x3) for 3x3 stride-1 convolutions padded by 1 (Winograd.c,
// WinogradF4.h). A tile is a `tile` x `tile` block of outputs (tile 2 or 4); an image of height x
// width has `reprise_winograd_tiles` of them, numbered row by row. Transformed data is laid out as
// P matrices, one per position ξ of the transformed tile (P = 16 for tile 2, 36 for tile 4):
// [P][rows][tileCount], where rows are channels or outputs and the tiles of `images` consecutive
// images lie side by side (image n's tiles from n * tiles(height, width, tile)), the matrices
// `reprise_winograd_stream(rows, tileCount)` floats apart (rows * tileCount or a little more, so
// that the P matrices fall into different cache sets: P * that many floats). A row has room for
// 8 floats past its tiles (tileCount >= images * tiles(height, width, tile) + 8): the transforms
// store whole vectors of 8 tiles. Tile 4 takes planes at least 13 wide (4 tiles across) and planes of
// 2x2 tiles (5 to 8 high and wide); the latter are transformed two images at a time, so their
// products must cover an even number of images (the transforms fill the odd last one's tiles with
// zeros) and tileCount must leave room for them.

/// The tiles of one height x width image: ceil(height / tile) * ceil(width / tile).
long reprise_winograd_tiles(long height, long width, long tile);

/// The distance in floats between consecutive matrices of transformed data with `rows` rows of
/// `tileCount`: rows * tileCount rounded up to an odd number of 64-byte cache lines.
long reprise_winograd_stream(long rows, long tileCount);

/// Whether the transforms take planes of height x width two images at a time (tile 4, planes of 2x2
/// tiles): nonzero or zero.
int reprise_winograd_pairs_images(long height, long width, long tile);

/// The floats of scratch space the transforms below need for planes of height x width.
long reprise_winograd_scratch_count(long height, long width, long tile);

/// The rows of a panel of the transformed weights: the products' register block of rows
/// (WinogradProducts.c), so that one block's broadcasts are one stream of consecutive floats.
#define REPRISE_WINOGRAD_PANEL_ROWS 6

/// The floats of one position's transformed weights of `rows` x `columns` filters, in panels: the
/// rows rounded up to a whole panel, times the columns.
long reprise_winograd_weight_plane(long rows, long columns);

/// Panels [first, first + count) of the transformed weights u[P][outputs][channels] (G g G^T) of
/// weights [outputs][channels][3][3], or, when `reversed` is nonzero, of those of the input
/// gradient's convolution: u[P][channels][outputs] of each filter rotated by 180°. Each u[ξ] is laid
/// out in panels of R = `REPRISE_WINOGRAD_PANEL_ROWS` rows, a panel column after column: row i,
/// column j at u[ξ * plane + i / R * R * columns + j * R + i % R], plane
/// `reprise_winograd_weight_plane(rows, columns)`, `reprise_winograd_weight_count` floats in all.
void reprise_winograd_weights_f32(
  const float *weights, long outputs, long channels, int reversed, long tile, long first, long count, float *u);

/// Outputs [first, first + count) of the weight gradient [outputs][channels][3][3] (G^T dU G) from
/// transformed sums du[P][outputs][channels].
void reprise_winograd_weight_gradient_f32(
  const float *du, long outputs, long channels, long tile, long first, long count, float *weightGradient);

/// The transformed input patches v[P][channels][tileCount] (B^T d B) of `images` images whose
/// plane (n, c) starts at input[n * imageStride + c * channelStride]. With `scale` and `shift` (both
/// or neither may be NULL), the patches are those of max(input · scale[c] + shift[c], 0): the
/// pre-activation unit's batch normalisation and ReLU, bit for bit, applied on the way in. With
/// `planeScale` instead (scale and shift NULL), those of input · planeScale[n * planeScaleStride +
/// c], one factor per plane (a channel dropout's mask), bit for bit. The P matrices are `stream`
/// floats apart: `reprise_winograd_stream(channels, tileCount)` for matrices of these channels, or,
/// where v points at row r of matrices of more rows, theirs (so that threads can transform blocks of
/// rows of the same matrices).
void reprise_winograd_input_f32(
  const float *input, long channelStride, long imageStride, long channels, long images, long height, long width,
  const float *scale, const float *shift, const float *planeScale, long planeScaleStride, long tile, float *v, long tileCount,
  long stream, float *scratch);

/// The transformed output-gradient tiles m[P][outputs][tileCount] (A dY A^T), laid out like the
/// input's, the matrices `stream` floats apart.
void reprise_winograd_output_gradient_f32(
  const float *gradient, long channelStride, long imageStride, long outputs, long images, long height, long width, long tile,
  float *m, long tileCount, long stream, float *scratch);

/// The outputs (A^T M A) of the products m[P][outputs][tileCount], written to plane (n, o) at
/// output[n * outputImageStride + o * outputChannelStride].
void reprise_winograd_output_f32(
  const float *m, long outputs, long images, long height, long width, long tile, long tileCount, float *output,
  long outputChannelStride, long outputImageStride, float *scratch);

/// The same outputs delivered plane by plane: plane (n, o) multiplied by planeScale[n *
/// planeScaleStride + o] (by 1 if `planeScale` is NULL) and written to planes[o] + n *
/// imageStrides[o], or added to the values there where adding[o] (never if `adding` is NULL); each
/// product rounded, then added, the bits of a product followed by an accumulation.
void reprise_winograd_output_planes_f32(
  const float *m, long outputs, long images, long height, long width, long tile, long tileCount, float *const *planes,
  const long *imageStrides, const unsigned char *adding, const float *planeScale, long planeScaleStride, float *scratch);

/// The floats of the transformed weights of `rows` x `columns` filters for tile `tile`, in panels
/// (`reprise_winograd_weights_f32`): a plane per position.
long reprise_winograd_weight_count(long rows, long columns, long tile);

/// The `positions` products c[ξ] = a[ξ] b[ξ] (WinogradProducts.c), or c[ξ] += a[ξ] b[ξ] when
/// `accumulate` is nonzero: a[ξ] is rows [firstRow, firstRow + rows) and depth [firstDepth,
/// firstDepth + depth) of the transformed weights u[ξ] (`reprise_winograd_weights_f32`'s panels) of
/// uRows x uDepth, b[ξ] is depth x columns and c[ξ] rows x columns, their rows `ld` apart and their
/// ξ-th matrices at b + ξ * stream(depth, ld) and c + ξ * stream(rows, ld)
/// (`reprise_winograd_stream`, as the transforms lay them out). A row of c has room for 8 floats
/// past `columns` (ld >= columns + 8), where whole vectors of results are stored. The sums add over
/// the depth in order, so products over consecutive blocks of the depth, accumulated, give the bits
/// of one product over all of it.
void reprise_winograd_products_f32(
  long positions, const float *u, long uRows, long uDepth, long firstRow, long rows, long firstDepth, long depth, const float *b,
  float *c, long columns, long ld, int accumulate);

/// The `positions` products c[ξ] = a[ξ] b[ξ]^T, or c[ξ] += a[ξ] b[ξ]^T when `accumulate` is nonzero:
/// a[ξ] is rows x count at a + ξ * stream(rows, ld), b[ξ] columns x count at b + ξ * stream(columns,
/// ld) (`reprise_winograd_stream`), both with rows `ld` apart (ld >= count rounded up to 8), and c[ξ]
/// the rows x columns matrix at c + ξ * rows * ldc with rows `ldc` apart (a block of columns of a
/// wider matrix, when ldc > columns). `panel` is scratch space for
/// `reprise_winograd_panel_count(columns, count)` floats.
void reprise_winograd_transposed_products_f32(
  long positions, const float *a, long rows, const float *b, long columns, long count, long ld, float *c, long ldc,
  int accumulate, float *panel);

/// The floats of scratch space `reprise_winograd_transposed_products_f32` needs.
long reprise_winograd_panel_count(long columns, long count);

/// Moves the pages mapped at [from, from + length) to [to, to + length), replacing what was mapped
/// there (Linux's mremap with MREMAP_FIXED): the memory keeps its contents and stays resident, and
/// no page faults in or is cleared. Page-aligned arguments. Returns 0, or the error: EFAULT where the
/// range spans more than one mapping, ENOSYS where the system has no such call (everything but
/// Linux). After an error, what was mapped at `to` may have been unmapped.
int reprise_move_pages(void *from, long length, void *to);

/// The panels of `a`'s transpose, A[i][d] = a[d * lda + i] for i < `rows`, d < `depth`, laid out as
/// the transformed weights are (`reprise_winograd_weights_f32`): row i, depth d at i / R * R *
/// depth + d * R + i % R, R = `REPRISE_WINOGRAD_PANEL_ROWS`; `reprise_winograd_weight_plane(rows,
/// depth)` floats, of which those past the last row are not written.
void reprise_pack_transposed_panel_f32(const float *a, long lda, long rows, long depth, float *panel);

/// C = A B with the Winograd products' register kernel: A `rows` x `depth` in panels
/// (`reprise_pack_transposed_panel_f32`), B `depth` x `columns` with rows `ldb` apart, C `rows` x
/// `columns` with rows `ldc` apart; nothing past C's columns is written. The sums add over the depth
/// in order, each by one fused multiply-add from zero. With `streaming` nonzero (and a depth of at
/// most 128, C 32-byte aligned and `ldc` a multiple of 8), C's whole vectors are stored past the
/// caches, for a result too large to stay in them until it is read.
void reprise_pointwise_products_f32(
  const float *panel, long rows, long depth, const float *b, long ldb, float *c, long ldc, long columns, int streaming);

/// C = A B^T, or C += A B^T with `accumulate`, with the Winograd products' register kernel: A `rows`
/// x `count` with rows `lda` apart, B `columns` x `count` with rows `ldb` apart (nothing past its
/// `count` columns is read), C `rows` x `columns` with rows `ldc` apart. B is first transposed into
/// `panel`, `reprise_winograd_panel_count(columns, count)` floats. Each sum adds its `count` terms
/// in order by fused multiply-adds onto what C held (or zero).
void reprise_pointwise_weight_products_f32(
  const float *a, long lda, long rows, const float *b, long ldb, long columns, long count, float *c, long ldc, int accumulate,
  float *panel);

#endif
