// OpenMPI's handles are macros over addresses of globals; Swift sees them through these getters.
#pragma once
#include <mpi.h>

static inline MPI_Comm sertrain_MPI_COMM_WORLD(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm sertrain_MPI_COMM_NULL(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype sertrain_MPI_FLOAT(void) { return MPI_FLOAT; }
static inline MPI_Datatype sertrain_MPI_DOUBLE(void) { return MPI_DOUBLE; }
static inline MPI_Datatype sertrain_MPI_INT(void) { return MPI_INT; }
static inline MPI_Datatype sertrain_MPI_INT64_T(void) { return MPI_INT64_T; }
static inline MPI_Datatype sertrain_MPI_BYTE(void) { return MPI_BYTE; }
static inline MPI_Datatype sertrain_MPI_CHAR(void) { return MPI_CHAR; }
static inline MPI_Op sertrain_MPI_SUM(void) { return MPI_SUM; }
static inline MPI_Op sertrain_MPI_MAX(void) { return MPI_MAX; }
static inline MPI_Op sertrain_MPI_MIN(void) { return MPI_MIN; }
static inline void *sertrain_MPI_IN_PLACE(void) { return MPI_IN_PLACE; }
static inline MPI_Status *sertrain_MPI_STATUS_IGNORE(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Status *sertrain_MPI_STATUSES_IGNORE(void) { return MPI_STATUSES_IGNORE; }
static inline MPI_Request sertrain_MPI_REQUEST_NULL(void) { return MPI_REQUEST_NULL; }
static inline MPI_Errhandler sertrain_MPI_ERRORS_RETURN(void) { return MPI_ERRORS_RETURN; }
static inline int sertrain_MPI_THREAD_FUNNELED(void) { return MPI_THREAD_FUNNELED; }
static inline int sertrain_MPI_THREAD_MULTIPLE(void) { return MPI_THREAD_MULTIPLE; }
