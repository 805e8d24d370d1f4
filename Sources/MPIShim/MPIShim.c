#include "MPIShim.h"

MPI_Comm reprise_mpi_comm_world(void) { return MPI_COMM_WORLD; }
MPI_Datatype reprise_mpi_float(void) { return MPI_FLOAT; }
MPI_Datatype reprise_mpi_double(void) { return MPI_DOUBLE; }
MPI_Datatype reprise_mpi_int64(void) { return MPI_INT64_T; }
MPI_Datatype reprise_mpi_byte(void) { return MPI_BYTE; }
MPI_Op reprise_mpi_sum(void) { return MPI_SUM; }
MPI_Op reprise_mpi_max(void) { return MPI_MAX; }
MPI_Request reprise_mpi_request_null(void) { return MPI_REQUEST_NULL; }
MPI_Status *reprise_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
MPI_Errhandler reprise_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
void *reprise_mpi_in_place(void) { return MPI_IN_PLACE; }
