// Reductions (sum, prod, max, min, mean, any, all), arg-reductions, softmax, and the strided
// copy that materialises a broadcast matmul operand.
//
// The arithmetic follows the cpu backend exactly (crates/backend-cpu/src/ops/reduce.rs and
// element.rs): float sums, products and means accumulate in double (f16 is widened through
// f32 first), integer ones in 64 bits with wrap-around; max and min work in the element type
// (f16 in f32) and a NaN, once seen, sticks. Only the order in which partial results are
// combined differs (a tree across threads), which is exact for integers and below f32/f16
// rounding for floats accumulated in double.
//
// Each reduction comes in two shapes, chosen by the host from the sizes:
// * `_block`: one block of REDUCE_THREADS threads per output (grid-stride over outputs), the
//   threads striding over the reduced elements and combining through a shared-memory tree;
// * `_thread`: one thread per output, looping over the reduced elements (few elements per
//   output, or enough outputs to fill the device).

// The block size of every `_block` kernel; the host launches with exactly this many threads.
#define REDUCE_THREADS 256

// ----- element types -----

// The type arithmetic happens in: f16 widens to f32, as on the cpu backend.
template <typename T> struct Elem {
    typedef T Value;
    static __device__ __forceinline__ T load(T v) { return v; }
    static __device__ __forceinline__ T store(T v) { return v; }
};
template <> struct Elem<f16> {
    typedef float Value;
    static __device__ __forceinline__ float load(f16 v) { return f16_to_f32(v); }
    static __device__ __forceinline__ f16 store(float v) { return f32_to_f16(v); }
};

// Identities of max and min, and NaN tests, per value type.
template <typename V> struct Lim;
template <> struct Lim<float> {
    static __device__ __forceinline__ float lowest() { return -__int_as_float(0x7f800000); }
    static __device__ __forceinline__ float highest() { return __int_as_float(0x7f800000); }
    static __device__ __forceinline__ bool nan(float v) { return v != v; }
};
template <> struct Lim<double> {
    static __device__ __forceinline__ double lowest() { return -__longlong_as_double(0x7ff0000000000000LL); }
    static __device__ __forceinline__ double highest() { return __longlong_as_double(0x7ff0000000000000LL); }
    static __device__ __forceinline__ bool nan(double v) { return v != v; }
};
template <> struct Lim<i32> {
    static __device__ __forceinline__ i32 lowest() { return -2147483647 - 1; }
    static __device__ __forceinline__ i32 highest() { return 2147483647; }
    static __device__ __forceinline__ bool nan(i32) { return false; }
};
template <> struct Lim<i64> {
    static __device__ __forceinline__ i64 lowest() { return -9223372036854775807LL - 1; }
    static __device__ __forceinline__ i64 highest() { return 9223372036854775807LL; }
    static __device__ __forceinline__ bool nan(i64) { return false; }
};
template <> struct Lim<u8> {
    static __device__ __forceinline__ u8 lowest() { return 0; }
    static __device__ __forceinline__ u8 highest() { return 255; }
    static __device__ __forceinline__ bool nan(u8) { return false; }
};

// The accumulator of sums and products (the cpu backend's `Number::Acc`): double for floats;
// 64-bit two's complement for integers, kept unsigned so that wrapping is defined behaviour.
// Wrapping in 64 bits and then narrowing equals wrapping in the narrow type.
template <typename T> struct Wide;
template <> struct Wide<f32> {
    typedef double Acc;
    static __device__ __forceinline__ double widen(f32 v) { return (double)v; }
    static __device__ __forceinline__ f32 narrow(double a) { return (f32)a; }
    static __device__ __forceinline__ f32 mean(double a, i64 n) { return (f32)(a / (double)n); }
};
template <> struct Wide<f64> {
    typedef double Acc;
    static __device__ __forceinline__ double widen(f64 v) { return v; }
    static __device__ __forceinline__ f64 narrow(double a) { return a; }
    static __device__ __forceinline__ f64 mean(double a, i64 n) { return a / (double)n; }
};
// f16 goes through f32 both ways, as the cpu backend reduces a widened f32 copy.
template <> struct Wide<f16> {
    typedef double Acc;
    static __device__ __forceinline__ double widen(f16 v) { return (double)f16_to_f32(v); }
    static __device__ __forceinline__ f16 narrow(double a) { return f32_to_f16((float)a); }
    static __device__ __forceinline__ f16 mean(double a, i64 n) { return f32_to_f16((float)(a / (double)n)); }
};
// Integer means divide the signed 64-bit sum, truncating toward zero; an empty mean is 0.
template <> struct Wide<i32> {
    typedef u64 Acc;
    static __device__ __forceinline__ u64 widen(i32 v) { return (u64)(i64)v; }
    static __device__ __forceinline__ i32 narrow(u64 a) { return (i32)(u32)a; }
    static __device__ __forceinline__ i32 mean(u64 a, i64 n) { return n == 0 ? 0 : (i32)(u32)(u64)((i64)a / n); }
};
template <> struct Wide<i64> {
    typedef u64 Acc;
    static __device__ __forceinline__ u64 widen(i64 v) { return (u64)v; }
    static __device__ __forceinline__ i64 narrow(u64 a) { return (i64)a; }
    static __device__ __forceinline__ i64 mean(u64 a, i64 n) { return n == 0 ? 0 : (i64)a / n; }
};
template <> struct Wide<u8> {
    typedef u64 Acc;
    static __device__ __forceinline__ u64 widen(u8 v) { return (u64)v; }
    static __device__ __forceinline__ u8 narrow(u64 a) { return (u8)a; }
    static __device__ __forceinline__ u8 mean(u64 a, i64 n) { return n == 0 ? 0 : (u8)(u64)((i64)a / n); }
};

// ----- reducers: init, step (fold one element), combine (merge two partials), finish -----

template <typename T> struct SumR {
    typedef typename Wide<T>::Acc Acc;
    static __device__ __forceinline__ Acc init() { return (Acc)0; }
    static __device__ __forceinline__ Acc step(Acc a, T x) { return a + Wide<T>::widen(x); }
    static __device__ __forceinline__ Acc combine(Acc a, Acc b) { return a + b; }
    static __device__ __forceinline__ T finish(Acc a, i64) { return Wide<T>::narrow(a); }
};

template <typename T> struct ProdR {
    typedef typename Wide<T>::Acc Acc;
    static __device__ __forceinline__ Acc init() { return (Acc)1; }
    static __device__ __forceinline__ Acc step(Acc a, T x) { return a * Wide<T>::widen(x); }
    static __device__ __forceinline__ Acc combine(Acc a, Acc b) { return a * b; }
    static __device__ __forceinline__ T finish(Acc a, i64) { return Wide<T>::narrow(a); }
};

template <typename T> struct MeanR {
    typedef typename Wide<T>::Acc Acc;
    static __device__ __forceinline__ Acc init() { return (Acc)0; }
    static __device__ __forceinline__ Acc step(Acc a, T x) { return a + Wide<T>::widen(x); }
    static __device__ __forceinline__ Acc combine(Acc a, Acc b) { return a + b; }
    static __device__ __forceinline__ T finish(Acc a, i64 n) { return Wide<T>::mean(a, n); }
};

// A NaN accumulator fails every comparison, so once seen it sticks.
template <typename T> struct MaxR {
    typedef typename Elem<T>::Value Acc;
    static __device__ __forceinline__ Acc init() { return Lim<Acc>::lowest(); }
    static __device__ __forceinline__ Acc combine(Acc a, Acc v) { return (Lim<Acc>::nan(v) || v > a) ? v : a; }
    static __device__ __forceinline__ Acc step(Acc a, T x) { return combine(a, Elem<T>::load(x)); }
    static __device__ __forceinline__ T finish(Acc a, i64) { return Elem<T>::store(a); }
};

template <typename T> struct MinR {
    typedef typename Elem<T>::Value Acc;
    static __device__ __forceinline__ Acc init() { return Lim<Acc>::highest(); }
    static __device__ __forceinline__ Acc combine(Acc a, Acc v) { return (Lim<Acc>::nan(v) || v < a) ? v : a; }
    static __device__ __forceinline__ Acc step(Acc a, T x) { return combine(a, Elem<T>::load(x)); }
    static __device__ __forceinline__ T finish(Acc a, i64) { return Elem<T>::store(a); }
};

// Bool is one byte; any non-zero byte counts as true, the result is 0 or 1.
template <typename T> struct AnyR {
    typedef int Acc;
    static __device__ __forceinline__ int init() { return 0; }
    static __device__ __forceinline__ int step(int a, T x) { return a | (x != 0); }
    static __device__ __forceinline__ int combine(int a, int b) { return a | b; }
    static __device__ __forceinline__ T finish(int a, i64) { return (T)(a != 0); }
};

template <typename T> struct AllR {
    typedef int Acc;
    static __device__ __forceinline__ int init() { return 1; }
    static __device__ __forceinline__ int step(int a, T x) { return a & (x != 0); }
    static __device__ __forceinline__ int combine(int a, int b) { return a & b; }
    static __device__ __forceinline__ T finish(int a, i64) { return (T)(a != 0); }
};

// ----- reduce -----
//
// Output `o` (row-major over the kept space `ks`) reduces the elements
// x[view_offset(ks, kv, o) + view_offset(rs, rv, i)] for i in [0, n_red); the host folds the
// views' offsets into `kv` and leaves `rv.offset` 0.

// view_offset without the divisions when the reduced space is one axis (the common case once
// the host has merged adjacent axes).
__device__ __forceinline__ i64 reduced_offset(const Space& rs, const View& rv, i64 i) {
    if (rs.rank == 1) return rv.offset + i * rv.strides[0];
    return view_offset(rs, rv, i);
}

template <class R, typename T>
__device__ __forceinline__ void reduce_thread(T* out, const T* x, const Space& ks, const View& kv, const Space& rs,
                                              const View& rv, i64 n_out, i64 n_red) {
    GRID_STRIDE_LOOP(o, n_out) {
        const T* base = x + view_offset(ks, kv, o);
        typename R::Acc acc = R::init();
        for (i64 i = 0; i < n_red; ++i) acc = R::step(acc, base[reduced_offset(rs, rv, i)]);
        out[o] = R::finish(acc, n_red);
    }
}

// `part` is the block's shared array of REDUCE_THREADS accumulators.
template <class R, typename T>
__device__ __forceinline__ void reduce_block(T* out, const T* x, const Space& ks, const View& kv, const Space& rs,
                                             const View& rv, i64 n_out, i64 n_red, typename R::Acc* part) {
    const int t = threadIdx.x;
    for (i64 o = blockIdx.x; o < n_out; o += gridDim.x) {
        const T* base = x + view_offset(ks, kv, o);
        typename R::Acc acc = R::init();
        for (i64 i = t; i < n_red; i += REDUCE_THREADS) acc = R::step(acc, base[reduced_offset(rs, rv, i)]);
        part[t] = acc;
        __syncthreads();
        for (int s = REDUCE_THREADS / 2; s > 0; s >>= 1) {
            if (t < s) part[t] = R::combine(part[t], part[t + s]);
            __syncthreads();
        }
        if (t == 0) out[o] = R::finish(part[0], n_red);
        // `part` is reused by the next output.
        __syncthreads();
    }
}

#define REDUCE_KERNELS(NAME, R, T)                                                                               \
    extern "C" __global__ void reduce_thread_##NAME##_##T(T* out, const T* x, Space ks, View kv, Space rs, View rv, \
                                                          i64 n_out, i64 n_red) {                                 \
        reduce_thread<R<T>, T>(out, x, ks, kv, rs, rv, n_out, n_red);                                            \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)                                                 \
        reduce_block_##NAME##_##T(T* out, const T* x, Space ks, View kv, Space rs, View rv, i64 n_out, i64 n_red) { \
        __shared__ R<T>::Acc part[REDUCE_THREADS];                                                               \
        reduce_block<R<T>, T>(out, x, ks, kv, rs, rv, n_out, n_red, part);                                       \
    }

#define REDUCE_NUMERIC(T)            \
    REDUCE_KERNELS(sum, SumR, T)     \
    REDUCE_KERNELS(prod, ProdR, T)   \
    REDUCE_KERNELS(mean, MeanR, T)   \
    REDUCE_KERNELS(max, MaxR, T)     \
    REDUCE_KERNELS(min, MinR, T)

REDUCE_NUMERIC(f16)
REDUCE_NUMERIC(f32)
REDUCE_NUMERIC(f64)
REDUCE_NUMERIC(i32)
REDUCE_NUMERIC(i64)
REDUCE_NUMERIC(u8)

// `boolean` is u8 (one byte, 0 or 1); the kernels are named with the dtype suffix `bool`.
typedef boolean bool_t;
#define REDUCE_BOOL_KERNELS(NAME, R)                                                                              \
    extern "C" __global__ void reduce_thread_##NAME##_bool(bool_t* out, const bool_t* x, Space ks, View kv, Space rs, \
                                                           View rv, i64 n_out, i64 n_red) {                       \
        reduce_thread<R<bool_t>, bool_t>(out, x, ks, kv, rs, rv, n_out, n_red);                                  \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(REDUCE_THREADS) reduce_block_##NAME##_bool(                     \
        bool_t* out, const bool_t* x, Space ks, View kv, Space rs, View rv, i64 n_out, i64 n_red) {               \
        __shared__ int part[REDUCE_THREADS];                                                                     \
        reduce_block<R<bool_t>, bool_t>(out, x, ks, kv, rs, rv, n_out, n_red, part);                             \
    }

REDUCE_BOOL_KERNELS(any, AnyR)
REDUCE_BOOL_KERNELS(all, AllR)

// ----- arg_reduce -----
//
// `x` is seen as [outer, n, inner]; output o = (p, j) indexes x[p, ., j]. n >= 1 (the host
// refuses an empty axis).

// Whether candidate (v, i) comes before the current best (bv, bi) in the order whose first
// element the cpu backend's scan returns: any NaN before any number, then the larger (ArgMax)
// or smaller (ArgMin) value, then the lower index. An index of -1 means "no candidate yet".
template <typename V, bool IS_MAX>
__device__ __forceinline__ bool arg_before(V v, i64 i, V bv, i64 bi) {
    if (i < 0) return false;
    if (bi < 0) return true;
    const bool vn = Lim<V>::nan(v), bn = Lim<V>::nan(bv);
    if (vn || bn) return (vn && bn) ? i < bi : vn;
    if (v == bv) return i < bi;
    return IS_MAX ? v > bv : v < bv;
}

template <typename T, typename O, bool IS_MAX>
__device__ __forceinline__ void arg_thread(O* out, const T* x, i64 n_out, i64 n, i64 inner) {
    typedef typename Elem<T>::Value V;
    GRID_STRIDE_LOOP(o, n_out) {
        const T* base = x + (o / inner) * n * inner + o % inner;
        V best = Elem<T>::load(base[0]);
        i64 bi = 0;
        for (i64 i = 1; i < n; ++i) {
            V v = Elem<T>::load(base[i * inner]);
            if (arg_before<V, IS_MAX>(v, i, best, bi)) {
                best = v;
                bi = i;
            }
        }
        out[o] = (O)bi;
    }
}

template <typename T, typename O, bool IS_MAX>
__device__ __forceinline__ void arg_block(O* out, const T* x, i64 n_out, i64 n, i64 inner,
                                          typename Elem<T>::Value* values, i64* indices) {
    typedef typename Elem<T>::Value V;
    const int t = threadIdx.x;
    for (i64 o = blockIdx.x; o < n_out; o += gridDim.x) {
        const T* base = x + (o / inner) * n * inner + o % inner;
        V best = Elem<T>::load(base[0]);
        i64 bi = -1;
        for (i64 i = t; i < n; i += REDUCE_THREADS) {
            V v = Elem<T>::load(base[i * inner]);
            if (arg_before<V, IS_MAX>(v, i, best, bi)) {
                best = v;
                bi = i;
            }
        }
        values[t] = best;
        indices[t] = bi;
        __syncthreads();
        for (int s = REDUCE_THREADS / 2; s > 0; s >>= 1) {
            if (t < s && arg_before<V, IS_MAX>(values[t + s], indices[t + s], values[t], indices[t])) {
                values[t] = values[t + s];
                indices[t] = indices[t + s];
            }
            __syncthreads();
        }
        if (t == 0) out[o] = (O)indices[0];
        __syncthreads();
    }
}

#define ARG_KERNELS(NAME, IS_MAX, T, O)                                                                           \
    extern "C" __global__ void arg_thread_##NAME##_##T##_##O(O* out, const T* x, i64 n_out, i64 n, i64 inner) {  \
        arg_thread<T, O, IS_MAX>(out, x, n_out, n, inner);                                                       \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)                                                 \
        arg_block_##NAME##_##T##_##O(O* out, const T* x, i64 n_out, i64 n, i64 inner) {                           \
        __shared__ Elem<T>::Value values[REDUCE_THREADS];                                                        \
        __shared__ i64 indices[REDUCE_THREADS];                                                                  \
        arg_block<T, O, IS_MAX>(out, x, n_out, n, inner, values, indices);                                       \
    }

#define ARG_ALL(T)                         \
    ARG_KERNELS(argmax, true, T, i64)      \
    ARG_KERNELS(argmax, true, T, i32)      \
    ARG_KERNELS(argmin, false, T, i64)     \
    ARG_KERNELS(argmin, false, T, i32)

ARG_ALL(f16)
ARG_ALL(f32)
ARG_ALL(f64)
ARG_ALL(i32)
ARG_ALL(i64)
ARG_ALL(u8)

// ----- softmax -----
//
// `x` and `out` are [outer, n, inner]; each row (p, j) runs along the middle axis. The formula
// is the cpu backend's (fused.rs): m = max (NaN propagates), e = exp(x - m) in the element
// type, s = Σ e in double; softmax = e / (T)s, log-softmax = x - m - (T)ln(s).

__device__ __forceinline__ float exp_t(float v) { return expf(v); }
__device__ __forceinline__ double exp_t(double v) { return exp(v); }

template <typename T> __device__ __forceinline__ T maximum_t(T a, T b) {
    if (Lim<T>::nan(a) || Lim<T>::nan(b)) return Lim<T>::nan(a) ? a : b;
    return a > b ? a : b;
}

// `out` does not alias `x` (the host refuses it), so `e` can be parked in `out`.
template <typename T>
__device__ __forceinline__ void softmax_thread(T* out, const T* x, i64 rows, i64 n, i64 inner, int log_softmax) {
    GRID_STRIDE_LOOP(r, rows) {
        const i64 start = (r / inner) * n * inner + r % inner;
        const T* xr = x + start;
        T* orow = out + start;
        T m = Lim<T>::lowest();
        for (i64 i = 0; i < n; ++i) m = maximum_t(m, xr[i * inner]);
        double s = 0.0;
        for (i64 i = 0; i < n; ++i) {
            T e = exp_t(xr[i * inner] - m);
            s += (double)e;
            orow[i * inner] = e;
        }
        if (log_softmax) {
            const T ls = (T)log(s);
            for (i64 i = 0; i < n; ++i) orow[i * inner] = xr[i * inner] - m - ls;
        } else {
            const T st = (T)s;
            for (i64 i = 0; i < n; ++i) orow[i * inner] = orow[i * inner] / st;
        }
    }
}

template <typename T>
__device__ __forceinline__ void softmax_block(T* out, const T* x, i64 rows, i64 n, i64 inner, int log_softmax,
                                              T* maxes, double* sums) {
    const int t = threadIdx.x;
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const i64 start = (r / inner) * n * inner + r % inner;
        const T* xr = x + start;
        T* orow = out + start;
        T m = Lim<T>::lowest();
        for (i64 i = t; i < n; i += REDUCE_THREADS) m = maximum_t(m, xr[i * inner]);
        maxes[t] = m;
        __syncthreads();
        for (int s = REDUCE_THREADS / 2; s > 0; s >>= 1) {
            if (t < s) maxes[t] = maximum_t(maxes[t], maxes[t + s]);
            __syncthreads();
        }
        m = maxes[0];
        double sum = 0.0;
        for (i64 i = t; i < n; i += REDUCE_THREADS) {
            T e = exp_t(xr[i * inner] - m);
            sum += (double)e;
            orow[i * inner] = e;
        }
        sums[t] = sum;
        __syncthreads();
        for (int s = REDUCE_THREADS / 2; s > 0; s >>= 1) {
            if (t < s) sums[t] += sums[t + s];
            __syncthreads();
        }
        // Each thread rewrites only the elements it wrote above, so no barrier is needed
        // between the two passes over `orow`.
        if (log_softmax) {
            const T ls = (T)log(sums[0]);
            for (i64 i = t; i < n; i += REDUCE_THREADS) orow[i * inner] = xr[i * inner] - m - ls;
        } else {
            const T st = (T)sums[0];
            for (i64 i = t; i < n; i += REDUCE_THREADS) orow[i * inner] = orow[i * inner] / st;
        }
        // `maxes` and `sums` are reused by the next row.
        __syncthreads();
    }
}

#define SOFTMAX_KERNELS(T)                                                                                        \
    extern "C" __global__ void softmax_thread_##T(T* out, const T* x, i64 rows, i64 n, i64 inner, int log_softmax) { \
        softmax_thread<T>(out, x, rows, n, inner, log_softmax);                                                  \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)                                                 \
        softmax_block_##T(T* out, const T* x, i64 rows, i64 n, i64 inner, int log_softmax) {                      \
        __shared__ T maxes[REDUCE_THREADS];                                                                      \
        __shared__ double sums[REDUCE_THREADS];                                                                  \
        softmax_block<T>(out, x, rows, n, inner, log_softmax, maxes, sums);                                      \
    }

SOFTMAX_KERNELS(f32)
SOFTMAX_KERNELS(f64)

// ----- broadcast copy (matmul operands) -----
//
// out[i] = x[view_offset(space, view, i)] for i in [0, n): the dense copy of a strided
// (broadcast) view, so that cuBLAS sees one matrix per batch at a constant stride.

#define BROADCAST_COPY(T)                                                                                        \
    extern "C" __global__ void broadcast_copy_##T(T* out, const T* x, Space space, View view, i64 n) {             \
        GRID_STRIDE_LOOP(i, n) out[i] = x[view_offset(space, view, i)];                                          \
    }

BROADCAST_COPY(f32)
BROADCAST_COPY(f64)
