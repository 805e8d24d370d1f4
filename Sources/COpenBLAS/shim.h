// OpenBLAS's CBLAS interface and its thread control (openblas_set_num_threads).
#include <cblas.h>
