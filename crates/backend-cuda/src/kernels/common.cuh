// Shared by every kernel source: element types, strided index spaces, half-precision
// conversion and the grid-stride loop. Prepended to each source before NVRTC compiles it
// (NVRTC is given no include path), so it must stay self-contained: no system headers.

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef int i32;
typedef long long i64;
typedef float f32;
typedef double f64;

// Half floats travel as their 16 bits; arithmetic happens in f32 (the CPU backend does the same).
typedef unsigned short f16;
// Bool is one byte, 0 or 1.
typedef unsigned char boolean;

__device__ __forceinline__ float f16_to_f32(f16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ f16 f32_to_f16(float f) {
    f16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ f16 f64_to_f16(double d) {
    f16 h;
    asm("cvt.rn.f16.f64 %0, %1;" : "=h"(h) : "d"(d));
    return h;
}

#define MAX_RANK 16

// A row-major iteration space (index.rs's `Space`).
struct Space {
    i32 rank;
    i64 dims[MAX_RANK];
};

// An operand's offset and per-axis strides over a Space (index.rs's `View`).
struct View {
    i64 offset;
    i64 strides[MAX_RANK];
};

// Element offset in `view` of the point with row-major linear index `linear` in `space`.
__device__ __forceinline__ i64 view_offset(const Space& space, const View& view, i64 linear) {
    i64 offset = view.offset;
    for (int k = space.rank - 1; k >= 0; --k) {
        i64 d = space.dims[k];
        i64 c = linear % d;
        linear /= d;
        offset += c * view.strides[k];
    }
    return offset;
}

#define GRID_STRIDE_LOOP(i, n) \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (i64)(n); i += (i64)blockDim.x * gridDim.x)

// Codes a kernel stores in the error flag (Device::with_error_flag).
#define ERROR_INDEX_OUT_OF_RANGE 1
#define ERROR_DIVISION_BY_ZERO 2
