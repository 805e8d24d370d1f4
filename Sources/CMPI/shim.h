// Open MPI's C interface (Debian's libopenmpi-dev, pkg-config ompi-c). Its predefined handles are
// macros Swift cannot import; MPIShim exports them as functions.
#include <mpi.h>
