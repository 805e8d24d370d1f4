// The harness of Scripts/kernel-ab.py: times the direct convolution kernels of two builds of
// Sources/CKernels in one process, call by call in turn, so that both see the same machine (on a
// shared virtual machine the speed drifts by tens of percent within a minute; alternating calls
// cancels that drift where alternating processes does not).
//
// Build: the "old" kernels compiled with every exported name prefixed by old_ (see the script), the
// working tree's kernels as they are, and this file. Usage:
//   kernel_ab N C H O [repetitions] [avx2]
// a 3x3 stride-1 convolution with padding 1 of N images of C channels of H x H to O outputs, laid
// out as ShiftedGrid lays it (row pitch H + 1, images (H + 1)^2 apart, one channel's images end to
// end). With "avx2" both builds run their AVX2 tiles.
#define _POSIX_C_SOURCE 200809L
#include "CKernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool old_reprise_set_wide_kernels_enabled(bool enabled);
long old_reprise_packed_taps_count(long outputs, long channels, long taps);
void old_reprise_pack_taps_f32(
  const float *weights, long outputs, long channels, long taps, long outputStride, long channelStride, long tapStride,
  float *packed);
void old_reprise_shifted_convolution_f32(
  const float *grid, long gridChannelStride, long channels, const float *packed, long outputs, const long *offsets,
  long taps, long firstRow, long rowCount, long rowsPerImage, long rowWidth, long gridImageStride, long gridRowStride,
  long gridOrigin, float *output, long outputImageStride, long outputChannelStride);
void old_reprise_shifted_weight_gradient_f32(
  const float *gradient, long gradientChannelStride, long outputs, const float *grid, const long *rows, long pairs,
  long first, long last, float *partial);

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *filled(long count, int modulus, float step) {
  float *p = aligned_alloc(64, (sizeof(float) * count + 63) / 64 * 64);
  if (!p) {
    fprintf(stderr, "kernel_ab: out of memory\n");
    exit(1);
  }
  for (long i = 0; i < count; i++) p[i] = (float)(i % modulus) * step - 0.2f;
  return p;
}

/// The largest |a - b| / (|a| + |b|) over `count` values.
static double largestRelativeDifference(const float *a, const float *b, long count) {
  double worst = 0;
  for (long i = 0; i < count; i++) {
    const double scale = fabs(a[i]) + fabs(b[i]), d = scale > 0 ? fabs(a[i] - b[i]) / scale : 0;
    if (d > worst) worst = d;
  }
  return worst;
}

/// Each build's fastest call and the sum of its calls' times, build 0 the old one.
typedef struct {
  double best[2], total[2];
} Timing;

static Timing timing(void) { return (Timing){{1e30, 1e30}, {0, 0}}; }

/// Records a call of build `v` that began at `start`.
static void record(Timing *timing, int v, double start) {
  const double t = now() - start;
  timing->best[v] = t < timing->best[v] ? t : timing->best[v];
  timing->total[v] += t;
}

static void report(const char *pass, double flops, Timing timing, int reps, double diff) {
  const double *best = timing.best, *total = timing.total;
  printf("  %-15s old %7.2f ms (%5.1f GFLOP/s, mean %7.2f)  new %7.2f ms (%5.1f GFLOP/s, mean %7.2f)  new/old %.3f  "
         "largest relative difference %.1e\n",
    pass, best[0] * 1e3, flops / best[0] / 1e9, total[0] / reps * 1e3, best[1] * 1e3, flops / best[1] / 1e9,
    total[1] / reps * 1e3, best[1] / best[0], diff);
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: kernel_ab N C H O [repetitions] [avx2]\n");
    return 2;
  }
  const long n = atol(argv[1]), c = atol(argv[2]), h = atol(argv[3]), o = atol(argv[4]);
  const int reps = argc > 5 ? atoi(argv[5]) : 21;
  if (n < 1 || c < 1 || h < 1 || o < 1 || reps < 1) {
    fprintf(stderr, "kernel_ab: sizes and repetitions must be positive\n");
    return 2;
  }
  if (!reprise_kernels_available()) {
    fprintf(stderr, "kernel_ab: this processor lacks AVX2 and FMA\n");
    return 2;
  }
  if (argc > 6 && strcmp(argv[6], "avx2") == 0) {
    reprise_set_wide_kernels_enabled(false);
    old_reprise_set_wide_kernels_enabled(false);
  }
  const long w = h, pitch = w + 1, image = (h + 1) * pitch, reach = 2 * pitch + 2;
  const long span = (n - 1) * image + (h - 1) * pitch + w, length = span + reach, taps = 9;
  long offsets[9];
  for (long k = 0; k < taps; k++) offsets[k] = k / 3 * pitch + k % 3;
  float *grid = filled(c * length, 7, 0.1f), *weights = filled(o * c * taps, 5, 0.01f);
  // Each build packs the weights its own way.
  float *packed[2] = {malloc(sizeof(float) * old_reprise_packed_taps_count(o, c, taps)),
    malloc(sizeof(float) * reprise_packed_taps_count(o, c, taps))};
  old_reprise_pack_taps_f32(weights, o, c, taps, c * taps, taps, 1, packed[0]);
  reprise_pack_taps_f32(weights, o, c, taps, c * taps, taps, 1, packed[1]);
  const long outputs = n * o * h * w;
  float *y[2] = {filled(outputs, 1, 0), filled(outputs, 1, 0)};
  const double flops = 2.0 * n * o * c * taps * h * w;
  printf("conv %ldx%ldx%ldx%ld -> %ld outputs, 3x3, %d calls each\n", n, c, h, w, o, reps);

  Timing forward = timing();
  for (int r = 0; r < reps; r++)
    for (int v = 0; v < 2; v++) {
      const double start = now();
      (v == 0 ? old_reprise_shifted_convolution_f32 : reprise_shifted_convolution_f32)(
        grid, length, c, packed[v], o, offsets, taps, 0, n * h, h, w, image, pitch, 0, y[v], h * w, n * h * w);
      record(&forward, v, start);
    }
  report("forward", flops, forward, reps, largestRelativeDifference(y[0], y[1], outputs));

  // The weight gradient over the grid, from an output gradient laid on a grid of the same pitch.
  const long pairs = c * taps, extent = reach + length;
  long *rows = malloc(sizeof(long) * pairs);
  for (long p = 0; p < pairs; p++) rows[p] = p / taps * length + offsets[p % taps];
  float *gradient = filled(o * extent, 3, 0.1f);
  float *partial[2] = {filled(o * pairs * 8, 1, 0), filled(o * pairs * 8, 1, 0)};
  Timing weightGradient = timing();
  for (int r = 0; r < reps; r++)
    for (int v = 0; v < 2; v++) {
      const double start = now();
      memset(partial[v], 0, sizeof(float) * o * pairs * 8);
      (v == 0 ? old_reprise_shifted_weight_gradient_f32 : reprise_shifted_weight_gradient_f32)(
        gradient + reach, extent, o, grid, rows, pairs, 0, span, partial[v]);
      record(&weightGradient, v, start);
    }
  // The 8 lanes of each sum added, as the caller adds them.
  for (int v = 0; v < 2; v++)
    for (long i = 0; i < o * pairs; i++) {
      float s = 0;
      for (int lane = 0; lane < 8; lane++) s += partial[v][i * 8 + lane];
      partial[v][i] = s;
    }
  report("weight gradient", flops, weightGradient, reps, largestRelativeDifference(partial[0], partial[1], o * pairs));
  return 0;
}
