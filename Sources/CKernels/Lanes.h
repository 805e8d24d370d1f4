// Vector helpers shared by the kernels of CKernels (a private header: not part of the module's
// interface).
#ifndef REPRISE_LANES_H
#define REPRISE_LANES_H

#include <immintrin.h>

/// The mask of the 8 lanes below `count` (all 8 from 8 on, none at 0 or below), for masked loads and
/// stores of a row's last, partial vector.
__attribute__((target("avx2,fma"))) static inline __m256i lanesBelow(long count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(count < 8 ? count : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

#endif
