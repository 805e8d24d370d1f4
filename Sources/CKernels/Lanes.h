// Vector helpers shared by the kernels of CKernels (a private header: not part of the module's
// interface).
#ifndef REPRISE_LANES_H
#define REPRISE_LANES_H

#include <immintrin.h>
#include <stdint.h>

/// The mask of the 8 lanes below `count` (all 8 from 8 on, none at 0 or below), for masked loads and
/// stores of a row's last, partial vector.
__attribute__((target("avx2,fma"))) static inline __m256i lanesBelow(long count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(count < 8 ? count : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/// Asks for the cache lines of the `bytes` bytes from `start` (nothing when `bytes` is 0 or less).
/// Addresses as integers: the lines are only asked for, never read here.
__attribute__((target("avx2,fma"))) static inline void prefetchLines(const void *start, long bytes) {
  const uintptr_t first = (uintptr_t)start, end = first + (uintptr_t)(bytes > 0 ? bytes : 0);
  for (uintptr_t p = first & ~(uintptr_t)63; p < end; p += 64) _mm_prefetch((const char *)p, _MM_HINT_T0);
}

/// Copies `count` floats from `from` to `to` (which do not overlap) with vector loads and stores
/// inlined where they are used: the rows copied are 8 to 64 floats long, and a call to `memcpy`
/// costs as much again as such a copy. A row that does not end on a whole vector ends with one that
/// overlaps the one before it, so that nothing past the row is read or written.
__attribute__((target("avx2,fma"))) static inline void copyRow(float *to, const float *from, long count) {
  if (count < 8) {
    for (long i = 0; i < count; i++) to[i] = from[i];
    return;
  }
  long i = 0;
  for (; i + 8 <= count; i += 8) _mm256_storeu_ps(to + i, _mm256_loadu_ps(from + i));
  if (i < count) _mm256_storeu_ps(to + count - 8, _mm256_loadu_ps(from + count - 8));
}

/// The 8x8 transpose of r[0..7] in place: lane j of row i becomes lane i of row j.
__attribute__((target("avx2,fma"))) static inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

#endif
