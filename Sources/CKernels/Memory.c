// mremap, which Swift cannot call: it is variadic in C.
#define _GNU_SOURCE
#include "CKernels.h"

#include <errno.h>
#include <sys/mman.h>

int reprise_move_pages(void *from, long length, void *to) {
#ifdef __linux__
  return mremap(from, (size_t)length, (size_t)length, MREMAP_MAYMOVE | MREMAP_FIXED, to) == MAP_FAILED ? errno : 0;
#else
  (void)from;
  (void)length;
  (void)to;
  return ENOSYS;
#endif
}
