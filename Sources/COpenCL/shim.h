// OpenCL 1.2 host API: the version every driver we target (PoCL, NVIDIA, AMD, Intel) implements.
#define CL_TARGET_OPENCL_VERSION 120
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>
