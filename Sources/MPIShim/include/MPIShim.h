#ifndef REPRISE_MPI_SHIM_H
#define REPRISE_MPI_SHIM_H
// Open MPI defines its predefined handles (MPI_COMM_WORLD, MPI_SUM, MPI_FLOAT, ...) as macros that
// expand to addresses of library globals cast to handle types, which Swift cannot import. These
// functions return them; everything else Swift calls in CMPI directly.
#include <mpi.h>

MPI_Comm reprise_mpi_comm_world(void);
MPI_Datatype reprise_mpi_float(void);
MPI_Datatype reprise_mpi_double(void);
MPI_Datatype reprise_mpi_int64(void);
MPI_Datatype reprise_mpi_byte(void);
MPI_Op reprise_mpi_sum(void);
MPI_Op reprise_mpi_max(void);
MPI_Request reprise_mpi_request_null(void);
MPI_Status *reprise_mpi_status_ignore(void);
MPI_Errhandler reprise_mpi_errors_return(void);
void *reprise_mpi_in_place(void);

#endif
