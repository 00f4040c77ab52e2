// Pooling kernels: forward with one thread per output element, backward as a gather (one
// thread per input-gradient element, looping over the windows that contain it), so neither
// needs atomics and both are deterministic. Windows are clipped to the input first: padding
// never wins a max and is not counted by an average; a window with nothing inside gives 0.
//
// Sweeps are normalised to three spatial dims (leading unit dims) by the host: ops/window.rs
// builds common.cuh's `WindowGeo`, pooling being its depthwise case (out_channels = channels).
// `is_max` is 1 for max pooling, 0 for average.

// The window of output index `o` along dim d, clipped to the input: [lo, hi), empty when it
// lies in the padding (the CPU's Window::clipped_window).
__device__ __forceinline__ void pool_clip(const WindowGeo& g, int d, i64 o, i64* lo, i64* hi) {
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
__device__ i64 pool_argmax(const WindowGeo& g, const T* x, i64 b, i64 c, const i64* lo, const i64* hi) {
    i64 at = -1;
    T best = (T)0;
    for (i64 i0 = lo[0]; i0 < hi[0]; ++i0)
        for (i64 i1 = lo[1]; i1 < hi[1]; ++i1)
            for (i64 i2 = lo[2]; i2 < hi[2]; ++i2) {
                const i64 s = (i0 * g.input[1] + i1) * g.input[2] + i2;
                const T v = x[window_x_at(g, b, c, s)];
                if (at < 0 || pool_beats(v, best)) {
                    best = v;
                    at = s;
                }
            }
    return at;
}

// One thread per output element (`n` of them).
template <typename T>
__device__ void pool_forward_impl(T* y, const T* x, const WindowGeo& g, i64 is_max, i64 n) {
    GRID_STRIDE_LOOP(e, n) {
        i64 b, c, p;
        window_split(g, e, g.out_channels, g.out_len, &b, &c, &p);
        i64 q[3], lo[3], hi[3];
        window_unflatten(p, g.output, q);
        for (int d = 0; d < 3; ++d) pool_clip(g, d, q[d], &lo[d], &hi[d]);
        T result = (T)0;
        if (is_max) {
            const i64 at = pool_argmax(g, x, b, c, lo, hi);
            if (at >= 0) result = x[window_x_at(g, b, c, at)];
        } else {
            const i64 count = (hi[0] - lo[0]) * (hi[1] - lo[1]) * (hi[2] - lo[2]);
            T sum = (T)0;
            for (i64 i0 = lo[0]; i0 < hi[0]; ++i0)
                for (i64 i1 = lo[1]; i1 < hi[1]; ++i1)
                    for (i64 i2 = lo[2]; i2 < hi[2]; ++i2)
                        sum += x[window_x_at(g, b, c, (i0 * g.input[1] + i1) * g.input[2] + i2)];
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
__device__ void pool_backward_impl(T* dx, const T* x, const T* dy, const WindowGeo& g, i64 is_max, i64 n) {
    GRID_STRIDE_LOOP(e, n) {
        i64 b, c, s;
        window_split(g, e, g.channels, g.in_len, &b, &c, &s);
        i64 pos[3], first[3], last[3];
        window_unflatten(s, g.input, pos);
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
                    const T grad = dy[window_y_at(g, b, c, p)];
                    if (is_max) {
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

#define POOL_KERNELS(T)                                                                                            \
    extern "C" __global__ void pool_forward_##T(T* y, const T* x, WindowGeo g, i64 is_max, i64 n) {                \
        pool_forward_impl<T>(y, x, g, is_max, n);                                                                  \
    }                                                                                                              \
    extern "C" __global__ void pool_backward_##T(T* dx, const T* x, const T* dy, WindowGeo g, i64 is_max, i64 n) { \
        pool_backward_impl<T>(dx, x, dy, g, is_max, n);                                                            \
    }

POOL_KERNELS(f32)
POOL_KERNELS(f64)
