// Convolution kernels: forward as a tiled implicit GEMM, backward-data as a gather (one thread
// per input-gradient element, no atomics), backward-filter as one block-wide reduction per
// kernel-gradient element (fixed order, so deterministic).
//
// Every sweep is normalised to three spatial dims (leading unit dims), as on the host
// (ops/window.rs builds common.cuh's `WindowGeo`), so one loop nest serves 1-d, 2-d and 3-d.

// Element offset of w[o, ci, t] (t a flat tap): (taps, C/G, O) channels-last, (O, C/G, taps)
// channels-first. x and y are addressed with common.cuh's window_x_at and window_y_at.
__device__ __forceinline__ i64 conv_w_at(const WindowGeo& g, i64 o, i64 ci, i64 t) {
    return g.channels_last ? (t * g.group_in + ci) * g.out_channels + o : (o * g.group_in + ci) * g.taps + t;
}

#define CONV_TILE_M 64
#define CONV_TILE_N 64
#define CONV_TILE_K 16
#define CONV_THREADS 256

// y = conv(x, w) as one GEMM per group: M = batch × output positions, N = output channels of
// the group, K = group input channels × taps, with k = ci·taps + t. The A tile (M × K) is
// gathered from x on the fly (0 in the padding); B (K × N) is read from w. A block computes a
// 64 × 64 tile of y with 256 threads, each accumulating a 4 × 4 micro-tile (rows ty + 16i,
// columns tx + 16j) over 16-deep K slices staged in shared memory.
//
// Each thread loads the A row and the B column `tid % 64` (the same for every slice, since
// 256 is a multiple of 64), at slice depths tid / 64 + 4i, so the row's decoding is hoisted
// out of the K loop. Tiles, column tiles and groups are walked with grid-stride loops whose
// bounds are uniform across the block, so every thread reaches every __syncthreads.
template <typename T>
__device__ void conv_forward_tiled(T* y, const T* x, const T* w, const WindowGeo& g) {
    __shared__ T as[CONV_TILE_K][CONV_TILE_M];
    __shared__ T bs[CONV_TILE_K][CONV_TILE_N];
    const int tid = threadIdx.x;
    const int tx = tid % 16;
    const int ty = tid / 16;
    const int load_row = tid % CONV_TILE_M;
    const int load_depth = tid / CONV_TILE_M;
    const i64 M = g.batch * g.out_len;
    const i64 N = g.group_out;
    const i64 K = g.group_in * g.taps;
    const i64 m_tiles = (M + CONV_TILE_M - 1) / CONV_TILE_M;
    const i64 n_tiles = (N + CONV_TILE_N - 1) / CONV_TILE_N;
    for (i64 grp = blockIdx.z; grp < g.groups; grp += gridDim.z) {
        for (i64 nt = blockIdx.y; nt < n_tiles; nt += gridDim.y) {
            for (i64 mt = blockIdx.x; mt < m_tiles; mt += gridDim.x) {
                // The A row this thread loads: batch element and window origin.
                const i64 m_load = mt * CONV_TILE_M + load_row;
                const bool m_ok = m_load < M;
                i64 b_load = 0;
                i64 origin[3] = {0, 0, 0};
                if (m_ok) {
                    b_load = m_load / g.out_len;
                    i64 q[3];
                    window_unflatten(m_load % g.out_len, g.output, q);
                    for (int d = 0; d < 3; ++d) origin[d] = q[d] * g.stride[d] - g.pad[d];
                }
                const i64 c_base = grp * g.group_in;
                // The B column this thread loads.
                const i64 n_load = nt * CONV_TILE_N + load_row;
                const bool n_ok = n_load < N;
                const i64 o_load = grp * g.group_out + n_load;

                T acc[4][4];
                for (int i = 0; i < 4; ++i)
                    for (int j = 0; j < 4; ++j) acc[i][j] = (T)0;

                for (i64 k0 = 0; k0 < K; k0 += CONV_TILE_K) {
                    for (int i = 0; i < 4; ++i) {
                        const int kk = load_depth + 4 * i;
                        const i64 k = k0 + kk;
                        T a = (T)0;
                        T bv = (T)0;
                        if (k < K) {
                            const i64 ci = k / g.taps;
                            const i64 t = k % g.taps;
                            if (m_ok) {
                                i64 tap[3];
                                window_unflatten(t, g.window, tap);
                                const i64 i0 = origin[0] + tap[0] * g.dilation[0];
                                const i64 i1 = origin[1] + tap[1] * g.dilation[1];
                                const i64 i2 = origin[2] + tap[2] * g.dilation[2];
                                if (i0 >= 0 && i0 < g.input[0] && i1 >= 0 && i1 < g.input[1] && i2 >= 0 &&
                                    i2 < g.input[2]) {
                                    const i64 s = (i0 * g.input[1] + i1) * g.input[2] + i2;
                                    a = x[window_x_at(g, b_load, c_base + ci, s)];
                                }
                            }
                            if (n_ok) bv = w[conv_w_at(g, o_load, ci, t)];
                        }
                        as[kk][load_row] = a;
                        bs[kk][load_row] = bv;
                    }
                    __syncthreads();
                    for (int kk = 0; kk < CONV_TILE_K; ++kk) {
                        T ar[4];
                        T br[4];
                        for (int i = 0; i < 4; ++i) ar[i] = as[kk][ty + 16 * i];
                        for (int j = 0; j < 4; ++j) br[j] = bs[kk][tx + 16 * j];
                        for (int i = 0; i < 4; ++i)
                            for (int j = 0; j < 4; ++j) acc[i][j] += ar[i] * br[j];
                    }
                    __syncthreads();
                }

                for (int i = 0; i < 4; ++i) {
                    const i64 m = mt * CONV_TILE_M + ty + 16 * i;
                    if (m >= M) continue;
                    const i64 b = m / g.out_len;
                    const i64 p = m % g.out_len;
                    for (int j = 0; j < 4; ++j) {
                        const i64 n = nt * CONV_TILE_N + tx + 16 * j;
                        if (n >= N) continue;
                        y[window_y_at(g, b, grp * g.group_out + n, p)] = acc[i][j];
                    }
                }
            }
        }
    }
}

// dx[b, c, i] = Σ over taps k and group output channels o of dy[b, o, q] · w[o, ci, k], for the
// output positions q with q·stride + k·dilation - pad = i in every dim. One thread per dx
// element (`n` of them), so each element is written once and no atomics are needed.
template <typename T>
__device__ void conv_backward_data_gather(T* dx, const T* dy, const T* w, const WindowGeo& g, i64 n) {
    GRID_STRIDE_LOOP(e, n) {
        i64 b, c, s;
        window_split(g, e, g.channels, g.in_len, &b, &c, &s);
        i64 pos[3];
        window_unflatten(s, g.input, pos);
        const i64 grp = c / g.group_in;
        const i64 ci = c % g.group_in;
        T sum = (T)0;
        for (i64 k0 = 0; k0 < g.window[0]; ++k0) {
            i64 q0 = pos[0] + g.pad[0] - k0 * g.dilation[0];
            if (q0 < 0 || q0 % g.stride[0] != 0) continue;
            q0 /= g.stride[0];
            if (q0 >= g.output[0]) continue;
            for (i64 k1 = 0; k1 < g.window[1]; ++k1) {
                i64 q1 = pos[1] + g.pad[1] - k1 * g.dilation[1];
                if (q1 < 0 || q1 % g.stride[1] != 0) continue;
                q1 /= g.stride[1];
                if (q1 >= g.output[1]) continue;
                for (i64 k2 = 0; k2 < g.window[2]; ++k2) {
                    i64 q2 = pos[2] + g.pad[2] - k2 * g.dilation[2];
                    if (q2 < 0 || q2 % g.stride[2] != 0) continue;
                    q2 /= g.stride[2];
                    if (q2 >= g.output[2]) continue;
                    const i64 p = (q0 * g.output[1] + q1) * g.output[2] + q2;
                    const i64 t = (k0 * g.window[1] + k1) * g.window[2] + k2;
                    for (i64 on = 0; on < g.group_out; ++on) {
                        const i64 o = grp * g.group_out + on;
                        sum += dy[window_y_at(g, b, o, p)] * w[conv_w_at(g, o, ci, t)];
                    }
                }
            }
        }
        dx[e] = sum;
    }
}

#define CONV_REDUCE_THREADS 256

// dw[o, ci, k] = Σ over batch elements b and output positions q of
// x[b, g·C/G + ci, q·stride + k·dilation - pad] · dy[b, o, q] (padding reads 0). One block per
// dw element (grid-stride over the `n` elements): each thread sums a fixed strided subset of
// the B·P terms, then a shared-memory tree adds the 256 partials. The order never depends on
// scheduling, so the result is deterministic, and there are no atomics.
template <typename T>
__device__ void conv_backward_filter_reduce(T* dw, const T* x, const T* dy, const WindowGeo& g, i64 n) {
    __shared__ T partial[CONV_REDUCE_THREADS];
    const int tid = threadIdx.x;
    const i64 total = g.batch * g.out_len;
    for (i64 e = blockIdx.x; e < n; e += gridDim.x) {
        i64 o, ci, t;
        if (g.channels_last) {
            o = e % g.out_channels;
            const i64 r = e / g.out_channels;
            ci = r % g.group_in;
            t = r / g.group_in;
        } else {
            t = e % g.taps;
            const i64 r = e / g.taps;
            ci = r % g.group_in;
            o = r / g.group_in;
        }
        const i64 c = (o / g.group_out) * g.group_in + ci;
        i64 tap[3];
        window_unflatten(t, g.window, tap);
        T sum = (T)0;
        for (i64 j = tid; j < total; j += CONV_REDUCE_THREADS) {
            const i64 b = j / g.out_len;
            const i64 p = j % g.out_len;
            i64 q[3];
            window_unflatten(p, g.output, q);
            const i64 i0 = q[0] * g.stride[0] + tap[0] * g.dilation[0] - g.pad[0];
            const i64 i1 = q[1] * g.stride[1] + tap[1] * g.dilation[1] - g.pad[1];
            const i64 i2 = q[2] * g.stride[2] + tap[2] * g.dilation[2] - g.pad[2];
            if (i0 < 0 || i0 >= g.input[0] || i1 < 0 || i1 >= g.input[1] || i2 < 0 || i2 >= g.input[2]) continue;
            const i64 s = (i0 * g.input[1] + i1) * g.input[2] + i2;
            sum += x[window_x_at(g, b, c, s)] * dy[window_y_at(g, b, o, p)];
        }
        partial[tid] = sum;
        __syncthreads();
        for (int half = CONV_REDUCE_THREADS / 2; half > 0; half /= 2) {
            if (tid < half) partial[tid] += partial[tid + half];
            __syncthreads();
        }
        if (tid == 0) dw[e] = partial[0];
        // The next element's first write to `partial` must wait for thread 0's read.
        __syncthreads();
    }
}

#define CONV_KERNELS(T)                                                                                     \
    extern "C" __global__ void __launch_bounds__(CONV_THREADS)                                              \
        conv_forward_##T(T* y, const T* x, const T* w, WindowGeo g) {                                       \
        conv_forward_tiled<T>(y, x, w, g);                                                                  \
    }                                                                                                       \
    extern "C" __global__ void conv_backward_data_##T(T* dx, const T* dy, const T* w, WindowGeo g, i64 n) { \
        conv_backward_data_gather<T>(dx, dy, w, g, n);                                                      \
    }                                                                                                       \
    extern "C" __global__ void __launch_bounds__(CONV_REDUCE_THREADS)                                       \
        conv_backward_filter_##T(T* dw, const T* x, const T* dy, WindowGeo g, i64 n) {                      \
        conv_backward_filter_reduce<T>(dw, x, dy, g, n);                                                    \
    }

CONV_KERNELS(f32)
CONV_KERNELS(f64)
