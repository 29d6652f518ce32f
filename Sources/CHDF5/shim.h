// HDF5's type and property-list handles are macros that open the library first; Swift calls these getters.
#pragma once
#include <hdf5.h>

static inline hid_t sertrain_H5P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t sertrain_H5P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t sertrain_H5P_FILE_CREATE(void) { return H5P_FILE_CREATE; }
static inline hid_t sertrain_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t sertrain_H5P_LINK_CREATE(void) { return H5P_LINK_CREATE; }
static inline hid_t sertrain_H5P_DATASET_ACCESS(void) { return H5P_DATASET_ACCESS; }
static inline hid_t sertrain_H5S_ALL(void) { return H5S_ALL; }
static inline hid_t sertrain_H5E_DEFAULT(void) { return H5E_DEFAULT; }
static inline hid_t sertrain_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t sertrain_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t sertrain_H5T_NATIVE_INT8(void) { return H5T_NATIVE_INT8; }
static inline hid_t sertrain_H5T_NATIVE_INT32(void) { return H5T_NATIVE_INT32; }
static inline hid_t sertrain_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t sertrain_H5T_C_S1(void) { return H5T_C_S1; }
static inline hsize_t sertrain_H5S_UNLIMITED(void) { return H5S_UNLIMITED; }
static inline size_t sertrain_H5T_VARIABLE(void) { return H5T_VARIABLE; }
static inline unsigned sertrain_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned sertrain_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline unsigned sertrain_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned sertrain_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
