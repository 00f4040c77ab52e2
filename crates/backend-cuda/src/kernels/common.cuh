// Shared by every kernel source: element types, strided index spaces, half-precision
// conversion, the grid-stride loop, and the window geometry of convolution and pooling. Prepended to each source before NVRTC compiles it
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

// ----- convolution and pooling windows -----

// A convolution or pooling sweep, normalised to three spatial dims (leading unit dims) so that
// one loop nest serves 1-d, 2-d and 3-d. Mirrors `WindowGeo` in ops/window.rs field for field
// (all i64, so the layout has no padding). Pooling is the depthwise case: out_channels = groups
// = channels, group_in = group_out = 1, dilation 1.
struct WindowGeo {
    i64 batch;
    i64 channels;
    i64 out_channels;
    i64 groups;
    i64 group_in;   // channels / groups
    i64 group_out;  // out_channels / groups
    i64 input[3];
    i64 window[3];
    i64 stride[3];
    i64 dilation[3];
    i64 pad[3];     // pad_before (pad_after only shapes the output length)
    i64 output[3];
    i64 in_len;     // product of input
    i64 out_len;    // product of output
    i64 taps;       // product of window
    i64 channels_last;
};
// With every field an i64, the size and the field order (which ops/window.rs's tests read
// from this declaration) pin every offset. (NVRTC has no offsetof to assert them one by one.)
static_assert(sizeof(WindowGeo) == 224, "WindowGeo must match ops/window.rs");

// Offset of element (b, c, s) of a tensor with `channels` channels and `len` spatial positions
// (s a flat spatial position) in the sweep's layout.
__device__ __forceinline__ i64 window_at(const WindowGeo& g, i64 b, i64 c, i64 s, i64 channels, i64 len) {
    return g.channels_last ? (b * len + s) * channels + c : (b * channels + c) * len + s;
}

// Element offsets of x[b, c, s] (the input) and y[b, o, p] (the output).
__device__ __forceinline__ i64 window_x_at(const WindowGeo& g, i64 b, i64 c, i64 s) {
    return window_at(g, b, c, s, g.channels, g.in_len);
}

__device__ __forceinline__ i64 window_y_at(const WindowGeo& g, i64 b, i64 o, i64 p) {
    return window_at(g, b, o, p, g.out_channels, g.out_len);
}

// Splits flat element index `e` of a tensor with `channels` channels and `len` spatial
// positions into (b, c, s): the inverse of window_at.
__device__ __forceinline__ void window_split(const WindowGeo& g, i64 e, i64 channels, i64 len, i64* b, i64* c,
                                             i64* s) {
    if (g.channels_last) {
        *c = e % channels;
        const i64 r = e / channels;
        *s = r % len;
        *b = r / len;
    } else {
        *s = e % len;
        const i64 r = e / len;
        *c = r % channels;
        *b = r / channels;
    }
}

// Flat row-major position → per-dim index over the three `dims`.
__device__ __forceinline__ void window_unflatten(i64 flat, const i64* dims, i64* idx) {
    idx[2] = flat % dims[2];
    const i64 line = flat / dims[2];
    idx[1] = line % dims[1];
    idx[0] = line / dims[1];
}
