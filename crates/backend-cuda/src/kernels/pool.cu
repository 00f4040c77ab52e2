// Pooling kernels: forward with one thread per output element, backward as a gather (one
// thread per input-gradient element, looping over the windows that contain it), so neither
// needs atomics and both are deterministic. Windows are clipped to the input first: padding
// never wins a max and is not counted by an average; a window with nothing inside gives 0.
//
// Sweeps are normalised to three spatial dims (leading unit dims) by the host (ops/pool.rs).

// Mirrors `PoolGeo` in ops/pool.rs (all fields i64, so the layout has no padding).
struct PoolGeo {
    i64 batch;
    i64 channels;
    i64 input[3];
    i64 window[3];
    i64 stride[3];
    i64 pad[3];  // pad_before (pad_after only shapes the output length)
    i64 output[3];
    i64 in_len;   // product of input
    i64 out_len;  // product of output
    i64 channels_last;
    i64 max;      // 1 for max pooling, 0 for average
};

// Offset of element (b, c, flat spatial position s) of a tensor with `len` spatial positions.
__device__ __forceinline__ i64 pool_at(const PoolGeo& g, i64 b, i64 c, i64 s, i64 len) {
    return g.channels_last ? (b * len + s) * g.channels + c : (b * g.channels + c) * len + s;
}

// Splits a flat element index of a tensor with `len` spatial positions into (b, c, s).
__device__ __forceinline__ void pool_split(const PoolGeo& g, i64 e, i64 len, i64* b, i64* c, i64* s) {
    if (g.channels_last) {
        *c = e % g.channels;
        const i64 r = e / g.channels;
        *s = r % len;
        *b = r / len;
    } else {
        *s = e % len;
        const i64 r = e / len;
        *c = r % g.channels;
        *b = r / g.channels;
    }
}

__device__ __forceinline__ void pool_unflatten(i64 flat, const i64* dims, i64* idx) {
    idx[2] = flat % dims[2];
    const i64 line = flat / dims[2];
    idx[1] = line % dims[1];
    idx[0] = line / dims[1];
}

// The window of output index `o` along dim d, clipped to the input: [lo, hi), empty when it
// lies in the padding (the CPU's Window::clipped_window).
__device__ __forceinline__ void pool_clip(const PoolGeo& g, int d, i64 o, i64* lo, i64* hi) {
    const i64 start = o * g.stride[d] - g.pad[d];
    i64 l = start < 0 ? 0 : start;
    if (l > g.input[d]) l = g.input[d];
    i64 h = start + g.window[d];
    if (h < 0) h = 0;
    if (h > g.input[d]) h = g.input[d];
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

// `v` replaces `best` as a window maximum: strictly greater, or the first NaN (the CPU's
// `beats`, so forward and backward pick the same element on every backend).
template <typename T>
__device__ __forceinline__ bool pool_beats(T v, T best) {
    return (v > best) || (isnan(v) && !isnan(best));
}

// Flat input position of the first maximum of the box [lo, hi) of plane (b, c), or -1 when
// the box is empty. Row-major order decides which of equal maxima is first.
template <typename T>
__device__ i64 pool_argmax(const PoolGeo& g, const T* x, i64 b, i64 c, const i64* lo, const i64* hi) {
    i64 at = -1;
    T best = (T)0;
    for (i64 i0 = lo[0]; i0 < hi[0]; ++i0)
        for (i64 i1 = lo[1]; i1 < hi[1]; ++i1)
            for (i64 i2 = lo[2]; i2 < hi[2]; ++i2) {
                const i64 s = (i0 * g.input[1] + i1) * g.input[2] + i2;
                const T v = x[pool_at(g, b, c, s, g.in_len)];
                if (at < 0 || pool_beats(v, best)) {
                    best = v;
                    at = s;
                }
            }
    return at;
}

// One thread per output element (`n` of them).
template <typename T>
__device__ void pool_forward_impl(T* y, const T* x, const PoolGeo& g, i64 n) {
    GRID_STRIDE_LOOP(e, n) {
        i64 b, c, p;
        pool_split(g, e, g.out_len, &b, &c, &p);
        i64 q[3], lo[3], hi[3];
        pool_unflatten(p, g.output, q);
        for (int d = 0; d < 3; ++d) pool_clip(g, d, q[d], &lo[d], &hi[d]);
        T result = (T)0;
        if (g.max) {
            const i64 at = pool_argmax(g, x, b, c, lo, hi);
            if (at >= 0) result = x[pool_at(g, b, c, at, g.in_len)];
        } else {
            const i64 count = (hi[0] - lo[0]) * (hi[1] - lo[1]) * (hi[2] - lo[2]);
            T sum = (T)0;
            for (i64 i0 = lo[0]; i0 < hi[0]; ++i0)
                for (i64 i1 = lo[1]; i1 < hi[1]; ++i1)
                    for (i64 i2 = lo[2]; i2 < hi[2]; ++i2)
                        sum += x[pool_at(g, b, c, (i0 * g.input[1] + i1) * g.input[2] + i2, g.in_len)];
            if (count > 0) result = sum / (T)count;
        }
        y[e] = result;
    }
}

// One thread per dx element (`n` of them): visits, in output order, every window whose
// clipped box contains the element, and adds that window's dy when the element is the
// window's first maximum (Max) or dy / count (Avg). The CPU scatters in the same output order,
// so the sums agree bit for bit.
template <typename T>
__device__ void pool_backward_impl(T* dx, const T* x, const T* dy, const PoolGeo& g, i64 n) {
    GRID_STRIDE_LOOP(e, n) {
        i64 b, c, s;
        pool_split(g, e, g.in_len, &b, &c, &s);
        i64 pos[3], first[3], last[3];
        pool_unflatten(s, g.input, pos);
        // Windows o along dim d with o·stride - pad <= pos < o·stride - pad + window.
        for (int d = 0; d < 3; ++d) {
            const i64 a = pos[d] + g.pad[d] - g.window[d] + 1;
            first[d] = a <= 0 ? 0 : (a + g.stride[d] - 1) / g.stride[d];
            last[d] = (pos[d] + g.pad[d]) / g.stride[d];
            if (last[d] > g.output[d] - 1) last[d] = g.output[d] - 1;
        }
        T sum = (T)0;
        for (i64 o0 = first[0]; o0 <= last[0]; ++o0)
            for (i64 o1 = first[1]; o1 <= last[1]; ++o1)
                for (i64 o2 = first[2]; o2 <= last[2]; ++o2) {
                    i64 lo[3], hi[3];
                    pool_clip(g, 0, o0, &lo[0], &hi[0]);
                    pool_clip(g, 1, o1, &lo[1], &hi[1]);
                    pool_clip(g, 2, o2, &lo[2], &hi[2]);
                    const i64 p = (o0 * g.output[1] + o1) * g.output[2] + o2;
                    const T grad = dy[pool_at(g, b, c, p, g.out_len)];
                    if (g.max) {
                        if (pool_argmax(g, x, b, c, lo, hi) == s) sum += grad;
                    } else {
                        // The element lies in the box, so the count is at least 1.
                        const i64 count = (hi[0] - lo[0]) * (hi[1] - lo[1]) * (hi[2] - lo[2]);
                        sum += grad / (T)count;
                    }
                }
        dx[e] = sum;
    }
}

#define POOL_KERNELS(T)                                                                                   \
    extern "C" __global__ void pool_forward_##T(T* y, const T* x, PoolGeo g, i64 n) {                     \
        pool_forward_impl<T>(y, x, g, n);                                                                 \
    }                                                                                                     \
    extern "C" __global__ void pool_backward_##T(T* dx, const T* x, const T* dy, PoolGeo g, i64 n) {      \
        pool_backward_impl<T>(dx, x, dy, g, n);                                                           \
    }

POOL_KERNELS(f32)
POOL_KERNELS(f64)
