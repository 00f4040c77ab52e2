// Element-wise kernels: fill, unary, binary (with broadcasting), select, cast, batch_norm.
//
// Each computation mirrors the cpu backend's element functions (backend-cpu/src/ops/element.rs)
// operation for operation: integers wrap (computed in the unsigned type, where C++ defines
// wrapping), f16 computes in f32 and rounds back, and results that the CPU computes with
// separate roundings use the `__*_rn` intrinsics, which the compiler never contracts into an
// FMA.
//
// Kernel families (host side: ops/elementwise.rs):
// * fill_<bits>(out, value, n): the host converts the value to the element's bits.
// * <unary op>_<dtype>(out, x, n): dense; `out` may be `x`.
// * <binary op>_<dtype>(out, a, b, space, va, vb, n) over a coalesced broadcast space, and
//   <binary op>_<dtype>_flat(out, a, b, sa, sb, n) when the space coalesces to one axis
//   (operand k's element i is at i * sk). `out` may be `a` or `b` when that input has out's
//   shape (the host copies an input that is `out` under another shape).
// * check_divisor_<dtype> / check_exponent_<dtype>(b, n, flag): the integer checks that run
//   before a Div, Mod or Pow writes anything.
// * select_<bits>(out, cond, t, f, space, vc, vt, vf, n) and select_<bits>_flat(out, cond, t,
//   f, sc, st, sf, n).
// * cast_<from>_<to>(out, x, n).
// * batch_norm_<dtype>(out, x, mean, var, beta, gamma, space, vm, vv, vb, vg, eps, n).

#define ERROR_NEGATIVE_EXPONENT 3

// ----- f16 narrowing -----

// f32 -> f16 as the cpu backend's `half` crate does it on x86 (F16C): round to nearest even,
// and a NaN keeps its sign and top payload bits and is made quiet (PTX's cvt would give the
// canonical NaN instead).
__device__ __forceinline__ f16 narrow_f16(float f) {
    u32 bits = __float_as_uint(f);
    if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0u) {
        return (f16)(((bits >> 16) & 0x8000u) | 0x7e00u | ((bits & 0x007fffffu) >> 13));
    }
    return f32_to_f16(f);
}

// f64 -> f16: `half::f16::from_f64` on x86 goes through f32 (two roundings), so this does too.
__device__ __forceinline__ f16 narrow_f16_from_f64(double d) {
    return narrow_f16((float)d);
}

#define LOAD_SAME(v) (v)
#define STORE_SAME(v) (v)
#define STORE_BOOL(v) ((boolean)((v) ? 1 : 0))

// ----- fill -----

#define FILL(bits, T)                                                                   \
    extern "C" __global__ void fill_##bits(T* out, T value, i64 n) {                     \
        GRID_STRIDE_LOOP(i, n) { out[i] = value; }                                       \
    }
FILL(u8, u8)
FILL(u16, u16)
FILL(u32, u32)
FILL(u64, u64)

// ----- float math, overloaded on float and double -----

#define MATH1(name, ffn, dfn)                                                            \
    __device__ __forceinline__ float name(float v) { return ffn(v); }                    \
    __device__ __forceinline__ double name(double v) { return dfn(v); }
#define MATH2(name, ffn, dfn)                                                            \
    __device__ __forceinline__ float name(float x, float y) { return ffn(x, y); }        \
    __device__ __forceinline__ double name(double x, double y) { return dfn(x, y); }

MATH1(m_abs, fabsf, fabs)
MATH1(m_sqrt, sqrtf, sqrt)
MATH1(m_exp, expf, exp)
MATH1(m_expm1, expm1f, expm1)
MATH1(m_log, logf, log)
MATH1(m_log1p, log1pf, log1p)
MATH1(m_sin, sinf, sin)
MATH1(m_cos, cosf, cos)
MATH1(m_tanh, tanhf, tanh)
MATH1(m_rint, rintf, rint)
MATH1(m_floor, floorf, floor)
MATH1(m_ceil, ceilf, ceil)
MATH2(m_pow, powf, pow)
MATH2(m_fmod, fmodf, fmod)

// Rust's f32::NAN and f64::NAN, which the cpu backend's maximum and minimum return.
__device__ __forceinline__ float m_nan(float) { return __uint_as_float(0x7fc00000u); }
__device__ __forceinline__ double m_nan(double) { return __longlong_as_double(0x7ff8000000000000LL); }

// ----- unary: floats (f16 computes in f32) -----

template <typename W> __device__ __forceinline__ W fu_neg(W v) { return -v; }
template <typename W> __device__ __forceinline__ W fu_abs(W v) { return m_abs(v); }
// ±0 and NaN stay as they are.
template <typename W> __device__ __forceinline__ W fu_sign(W v) {
    return v > (W)0 ? (W)1 : (v < (W)0 ? (W)-1 : v);
}
template <typename W> __device__ __forceinline__ W fu_square(W v) { return v * v; }
template <typename W> __device__ __forceinline__ W fu_sqrt(W v) { return m_sqrt(v); }
template <typename W> __device__ __forceinline__ W fu_reciprocal(W v) { return (W)1 / v; }
template <typename W> __device__ __forceinline__ W fu_exp(W v) { return m_exp(v); }
template <typename W> __device__ __forceinline__ W fu_expm1(W v) { return m_expm1(v); }
template <typename W> __device__ __forceinline__ W fu_log(W v) { return m_log(v); }
template <typename W> __device__ __forceinline__ W fu_log1p(W v) { return m_log1p(v); }
template <typename W> __device__ __forceinline__ W fu_sin(W v) { return m_sin(v); }
template <typename W> __device__ __forceinline__ W fu_cos(W v) { return m_cos(v); }
template <typename W> __device__ __forceinline__ W fu_tanh(W v) { return m_tanh(v); }
// The CPU's overflow-free forms: the exponent is never positive.
template <typename W> __device__ __forceinline__ W fu_sigmoid(W v) {
    if (v >= (W)0) {
        return (W)1 / ((W)1 + m_exp(-v));
    }
    W e = m_exp(v);
    return e / ((W)1 + e);
}
template <typename W> __device__ __forceinline__ W fu_softplus(W v) {
    return v > (W)0 ? v + m_log1p(m_exp(-v)) : m_log1p(m_exp(v));
}
template <typename W> __device__ __forceinline__ W fu_softsign(W v) { return v / ((W)1 + m_abs(v)); }
// rint rounds half to even in the default rounding mode.
template <typename W> __device__ __forceinline__ W fu_round(W v) { return m_rint(v); }
template <typename W> __device__ __forceinline__ W fu_floor(W v) { return m_floor(v); }
template <typename W> __device__ __forceinline__ W fu_ceil(W v) { return m_ceil(v); }

#define UNARY_KERNEL(name, fn, sfx, T, W, LOAD, STORE)                                   \
    extern "C" __global__ void name##_##sfx(T* out, const T* x, i64 n) {                 \
        GRID_STRIDE_LOOP(i, n) { out[i] = STORE(fn((W)LOAD(x[i]))); }                    \
    }
#define UNARY_FLOAT(name)                                                                \
    UNARY_KERNEL(name, fu_##name, f16, f16, float, f16_to_f32, narrow_f16)              \
    UNARY_KERNEL(name, fu_##name, f32, f32, f32, LOAD_SAME, STORE_SAME)                  \
    UNARY_KERNEL(name, fu_##name, f64, f64, f64, LOAD_SAME, STORE_SAME)

UNARY_FLOAT(neg)
UNARY_FLOAT(abs)
UNARY_FLOAT(sign)
UNARY_FLOAT(square)
UNARY_FLOAT(sqrt)
UNARY_FLOAT(reciprocal)
UNARY_FLOAT(exp)
UNARY_FLOAT(expm1)
UNARY_FLOAT(log)
UNARY_FLOAT(log1p)
UNARY_FLOAT(sin)
UNARY_FLOAT(cos)
UNARY_FLOAT(tanh)
UNARY_FLOAT(sigmoid)
UNARY_FLOAT(softplus)
UNARY_FLOAT(softsign)
UNARY_FLOAT(round)
UNARY_FLOAT(floor)
UNARY_FLOAT(ceil)

// ----- unary: integers (wrapping, like Rust's wrapping_neg / wrapping_abs / wrapping_mul) -----

#define SIGNED_UNARY_FNS(T, U)                                                           \
    __device__ __forceinline__ T iu_neg(T v) { return (T)((U)0 - (U)v); }                \
    __device__ __forceinline__ T iu_abs(T v) { return v < 0 ? (T)((U)0 - (U)v) : v; }    \
    __device__ __forceinline__ T iu_sign(T v) { return (T)((v > 0) - (v < 0)); }         \
    __device__ __forceinline__ T iu_square(T v) { return (T)((U)v * (U)v); }
SIGNED_UNARY_FNS(i32, u32)
SIGNED_UNARY_FNS(i64, u64)
__device__ __forceinline__ u8 iu_neg(u8 v) { return (u8)(0u - (u32)v); }
__device__ __forceinline__ u8 iu_abs(u8 v) { return v; }
__device__ __forceinline__ u8 iu_sign(u8 v) { return (u8)(v != 0 ? 1 : 0); }
__device__ __forceinline__ u8 iu_square(u8 v) { return (u8)((u32)v * (u32)v); }

#define UNARY_INT(name)                                                                  \
    UNARY_KERNEL(name, iu_##name, i32, i32, i32, LOAD_SAME, STORE_SAME)                  \
    UNARY_KERNEL(name, iu_##name, i64, i64, i64, LOAD_SAME, STORE_SAME)                  \
    UNARY_KERNEL(name, iu_##name, u8, u8, u8, LOAD_SAME, STORE_SAME)

UNARY_INT(neg)
UNARY_INT(abs)
UNARY_INT(sign)
UNARY_INT(square)

extern "C" __global__ void logical_not_bool(boolean* out, const boolean* x, i64 n) {
    GRID_STRIDE_LOOP(i, n) { out[i] = STORE_BOOL(x[i] == 0); }
}

// ----- binary: arithmetic on floats (f16 computes in f32) -----

template <typename W> __device__ __forceinline__ W fb_add(W x, W y) { return x + y; }
template <typename W> __device__ __forceinline__ W fb_sub(W x, W y) { return x - y; }
template <typename W> __device__ __forceinline__ W fb_mul(W x, W y) { return x * y; }
template <typename W> __device__ __forceinline__ W fb_div(W x, W y) { return x / y; }
template <typename W> __device__ __forceinline__ W fb_pow(W x, W y) { return m_pow(x, y); }
// Between equal operands (+0 and -0) the first wins, as Rust's f32::max / min do on the CPU.
template <typename W> __device__ __forceinline__ W fb_maximum(W x, W y) {
    return (x != x || y != y) ? m_nan(x) : (x < y ? y : x);
}
template <typename W> __device__ __forceinline__ W fb_minimum(W x, W y) {
    return (x != x || y != y) ? m_nan(x) : (y < x ? y : x);
}
// Floored: the remainder takes the sign of the divisor.
template <typename W> __device__ __forceinline__ W fb_mod(W x, W y) {
    W r = m_fmod(x, y);
    return (r != (W)0 && ((r < (W)0) != (y < (W)0))) ? r + y : r;
}

// ----- binary: arithmetic on integers -----
//
// Zero divisors and negative exponents never reach these (the check kernels refuse them
// first); the guards only keep the functions total, as the CPU's are.

#define SIGNED_BINARY_FNS(T, U)                                                          \
    __device__ __forceinline__ T ib_add(T x, T y) { return (T)((U)x + (U)y); }           \
    __device__ __forceinline__ T ib_sub(T x, T y) { return (T)((U)x - (U)y); }           \
    __device__ __forceinline__ T ib_mul(T x, T y) { return (T)((U)x * (U)y); }           \
    /* MIN / -1 wraps to MIN (Rust's wrapping_div); C++ leaves it undefined. */           \
    __device__ __forceinline__ T ib_div(T x, T y) {                                      \
        if (y == 0) return 0;                                                            \
        if (y == -1) return (T)((U)0 - (U)x);                                            \
        return x / y;                                                                    \
    }                                                                                    \
    __device__ __forceinline__ T ib_mod(T x, T y) {                                      \
        if (y == 0 || y == -1) return 0;                                                 \
        T r = x % y;                                                                     \
        return (r != 0 && ((r < 0) != (y < 0))) ? (T)((U)r + (U)y) : r;                  \
    }                                                                                    \
    /* Square-and-multiply on the exponent's bits as u64, like the CPU. */               \
    __device__ __forceinline__ T ib_pow(T x, T y) {                                      \
        u64 e = (u64)(i64)y;                                                             \
        U base = (U)x;                                                                   \
        U acc = 1;                                                                       \
        while (e > 0) {                                                                  \
            if (e & 1) acc = acc * base;                                                 \
            base = base * base;                                                          \
            e >>= 1;                                                                     \
        }                                                                                \
        return (T)acc;                                                                   \
    }                                                                                    \
    __device__ __forceinline__ T ib_maximum(T x, T y) { return x > y ? x : y; }          \
    __device__ __forceinline__ T ib_minimum(T x, T y) { return x < y ? x : y; }
SIGNED_BINARY_FNS(i32, u32)
SIGNED_BINARY_FNS(i64, u64)

// u8 arithmetic promotes to int; narrowing back to u8 keeps the low 8 bits (wrapping).
__device__ __forceinline__ u8 ib_add(u8 x, u8 y) { return (u8)((u32)x + (u32)y); }
__device__ __forceinline__ u8 ib_sub(u8 x, u8 y) { return (u8)((u32)x - (u32)y); }
__device__ __forceinline__ u8 ib_mul(u8 x, u8 y) { return (u8)((u32)x * (u32)y); }
__device__ __forceinline__ u8 ib_div(u8 x, u8 y) { return y == 0 ? (u8)0 : (u8)(x / y); }
__device__ __forceinline__ u8 ib_mod(u8 x, u8 y) { return y == 0 ? (u8)0 : (u8)(x % y); }
__device__ __forceinline__ u8 ib_pow(u8 x, u8 y) {
    u32 e = y;
    u32 base = x;
    u32 acc = 1;
    while (e > 0) {
        if (e & 1) acc = (acc * base) & 0xffu;
        base = (base * base) & 0xffu;
        e >>= 1;
    }
    return (u8)acc;
}
__device__ __forceinline__ u8 ib_maximum(u8 x, u8 y) { return x > y ? x : y; }
__device__ __forceinline__ u8 ib_minimum(u8 x, u8 y) { return x < y ? x : y; }

// ----- binary: comparisons (any dtype) and logic (bool) -----

template <typename W> __device__ __forceinline__ bool cb_equal(W x, W y) { return x == y; }
template <typename W> __device__ __forceinline__ bool cb_not_equal(W x, W y) { return x != y; }
template <typename W> __device__ __forceinline__ bool cb_less(W x, W y) { return x < y; }
template <typename W> __device__ __forceinline__ bool cb_less_equal(W x, W y) { return x <= y; }
template <typename W> __device__ __forceinline__ bool cb_greater(W x, W y) { return x > y; }
template <typename W> __device__ __forceinline__ bool cb_greater_equal(W x, W y) { return x >= y; }
__device__ __forceinline__ bool cb_logical_and(u32 x, u32 y) { return x != 0 && y != 0; }
__device__ __forceinline__ bool cb_logical_or(u32 x, u32 y) { return x != 0 || y != 0; }

// The two kernels of one binary op on one dtype: `T` in, `OT` out, computing in `W`.
#define BINARY_KERNELS(name, fn, sfx, T, OT, W, LOAD, STORE)                             \
    extern "C" __global__ void name##_##sfx(OT* out, const T* a, const T* b, Space space, \
                                            View va, View vb, i64 n) {                   \
        GRID_STRIDE_LOOP(i, n) {                                                         \
            W x = (W)LOAD(a[view_offset(space, va, i)]);                                 \
            W y = (W)LOAD(b[view_offset(space, vb, i)]);                                 \
            out[i] = STORE(fn(x, y));                                                    \
        }                                                                                \
    }                                                                                    \
    extern "C" __global__ void name##_##sfx##_flat(OT* out, const T* a, const T* b, i64 sa, \
                                                   i64 sb, i64 n) {                      \
        GRID_STRIDE_LOOP(i, n) {                                                         \
            W x = (W)LOAD(a[i * sa]);                                                    \
            W y = (W)LOAD(b[i * sb]);                                                    \
            out[i] = STORE(fn(x, y));                                                    \
        }                                                                                \
    }

#define BINARY_ARITH(name)                                                               \
    BINARY_KERNELS(name, fb_##name, f16, f16, f16, float, f16_to_f32, narrow_f16)        \
    BINARY_KERNELS(name, fb_##name, f32, f32, f32, f32, LOAD_SAME, STORE_SAME)           \
    BINARY_KERNELS(name, fb_##name, f64, f64, f64, f64, LOAD_SAME, STORE_SAME)           \
    BINARY_KERNELS(name, ib_##name, i32, i32, i32, i32, LOAD_SAME, STORE_SAME)           \
    BINARY_KERNELS(name, ib_##name, i64, i64, i64, i64, LOAD_SAME, STORE_SAME)           \
    BINARY_KERNELS(name, ib_##name, u8, u8, u8, u8, LOAD_SAME, STORE_SAME)

BINARY_ARITH(add)
BINARY_ARITH(sub)
BINARY_ARITH(mul)
BINARY_ARITH(div)
BINARY_ARITH(pow)
BINARY_ARITH(maximum)
BINARY_ARITH(minimum)
BINARY_ARITH(mod)

#define BINARY_COMPARE(name)                                                             \
    BINARY_KERNELS(name, cb_##name, f16, f16, boolean, float, f16_to_f32, STORE_BOOL)    \
    BINARY_KERNELS(name, cb_##name, f32, f32, boolean, f32, LOAD_SAME, STORE_BOOL)       \
    BINARY_KERNELS(name, cb_##name, f64, f64, boolean, f64, LOAD_SAME, STORE_BOOL)       \
    BINARY_KERNELS(name, cb_##name, i32, i32, boolean, i32, LOAD_SAME, STORE_BOOL)       \
    BINARY_KERNELS(name, cb_##name, i64, i64, boolean, i64, LOAD_SAME, STORE_BOOL)       \
    BINARY_KERNELS(name, cb_##name, u8, u8, boolean, u32, LOAD_SAME, STORE_BOOL)         \
    BINARY_KERNELS(name, cb_##name, bool, boolean, boolean, u32, LOAD_SAME, STORE_BOOL)

BINARY_COMPARE(equal)
BINARY_COMPARE(not_equal)
BINARY_COMPARE(less)
BINARY_COMPARE(less_equal)
BINARY_COMPARE(greater)
BINARY_COMPARE(greater_equal)
BINARY_KERNELS(logical_and, cb_logical_and, bool, boolean, boolean, u32, LOAD_SAME, STORE_BOOL)
BINARY_KERNELS(logical_or, cb_logical_or, bool, boolean, boolean, u32, LOAD_SAME, STORE_BOOL)

// ----- binary: the integer checks, run before anything is written -----

#define CHECK_KERNELS(sfx, T)                                                            \
    extern "C" __global__ void check_divisor_##sfx(const T* b, i64 n, int* flag) {       \
        GRID_STRIDE_LOOP(i, n) {                                                         \
            if (b[i] == 0) *flag = ERROR_DIVISION_BY_ZERO;                               \
        }                                                                                \
    }                                                                                    \
    extern "C" __global__ void check_exponent_##sfx(const T* b, i64 n, int* flag) {      \
        GRID_STRIDE_LOOP(i, n) {                                                         \
            if ((i64)b[i] < 0) *flag = ERROR_NEGATIVE_EXPONENT;                          \
        }                                                                                \
    }
CHECK_KERNELS(i32, i32)
CHECK_KERNELS(i64, i64)
CHECK_KERNELS(u8, u8)

// ----- select: moves elements by size -----

#define SELECT(bits, T)                                                                  \
    extern "C" __global__ void select_##bits(T* out, const boolean* cond, const T* t,    \
                                             const T* f, Space space, View vc, View vt,  \
                                             View vf, i64 n) {                           \
        GRID_STRIDE_LOOP(i, n) {                                                         \
            out[i] = cond[view_offset(space, vc, i)] != 0 ? t[view_offset(space, vt, i)] \
                                                          : f[view_offset(space, vf, i)]; \
        }                                                                                \
    }                                                                                    \
    extern "C" __global__ void select_##bits##_flat(T* out, const boolean* cond,         \
                                                    const T* t, const T* f, i64 sc,      \
                                                    i64 st, i64 sf, i64 n) {             \
        GRID_STRIDE_LOOP(i, n) { out[i] = cond[i * sc] != 0 ? t[i * st] : f[i * sf]; }  \
    }
SELECT(u8, u8)
SELECT(u16, u16)
SELECT(u32, u32)
SELECT(u64, u64)

// ----- cast -----
//
// The CPU converts a float source through f64 (`U::from_f64`) and an integer or bool source
// through i64 (`U::from_i64` / `U::from_bool`); the overloads of `convert_to_*` on double and
// i64 are those two rule sets.

// Float to integer: NaN gives 0, out-of-range values saturate, the rest truncate (Rust `as`).
__device__ __forceinline__ f16 convert_to_f16(double d) { return narrow_f16_from_f64(d); }
__device__ __forceinline__ f32 convert_to_f32(double d) { return (f32)d; }
__device__ __forceinline__ f64 convert_to_f64(double d) { return d; }
__device__ __forceinline__ i32 convert_to_i32(double d) {
    if (d != d) return 0;
    if (d >= 2147483647.0) return 2147483647;
    if (d <= -2147483648.0) return (i32)(-2147483647 - 1);
    return (i32)d;
}
__device__ __forceinline__ i64 convert_to_i64(double d) {
    if (d != d) return 0;
    if (d >= 9223372036854775808.0) return 9223372036854775807LL;
    if (d <= -9223372036854775808.0) return (i64)(-9223372036854775807LL - 1);
    return (i64)d;
}
__device__ __forceinline__ u8 convert_to_u8(double d) {
    if (d != d) return 0;
    if (d >= 255.0) return 255;
    if (d <= 0.0) return 0;
    return (u8)d;
}
// NaN is non-zero.
__device__ __forceinline__ boolean convert_to_bool(double d) { return STORE_BOOL(d != 0.0); }

// Integer to float rounds to nearest; f16 through f64 then f32 (`f16::from_f64(v as f64)`);
// narrower integers wrap.
__device__ __forceinline__ f16 convert_to_f16(i64 v) { return narrow_f16_from_f64((double)v); }
__device__ __forceinline__ f32 convert_to_f32(i64 v) { return (f32)v; }
__device__ __forceinline__ f64 convert_to_f64(i64 v) { return (f64)v; }
__device__ __forceinline__ i32 convert_to_i32(i64 v) { return (i32)(u32)(u64)v; }
__device__ __forceinline__ i64 convert_to_i64(i64 v) { return v; }
__device__ __forceinline__ u8 convert_to_u8(i64 v) { return (u8)(u64)v; }
__device__ __forceinline__ boolean convert_to_bool(i64 v) { return STORE_BOOL(v != 0); }

#define WIDEN_F16(v) ((double)f16_to_f32(v))
#define WIDEN_FLOAT(v) ((double)(v))
#define WIDEN_INT(v) ((i64)(v))
#define WIDEN_BOOL(v) ((i64)((v) != 0 ? 1 : 0))

#define CAST(from, FT, WIDEN, to, TT)                                                    \
    extern "C" __global__ void cast_##from##_##to(TT* out, const FT* x, i64 n) {         \
        GRID_STRIDE_LOOP(i, n) { out[i] = convert_to_##to(WIDEN(x[i])); }                \
    }
#define CAST_FROM(from, FT, WIDEN)                                                       \
    CAST(from, FT, WIDEN, f16, f16)                                                      \
    CAST(from, FT, WIDEN, f32, f32)                                                      \
    CAST(from, FT, WIDEN, f64, f64)                                                      \
    CAST(from, FT, WIDEN, i32, i32)                                                      \
    CAST(from, FT, WIDEN, i64, i64)                                                      \
    CAST(from, FT, WIDEN, u8, u8)                                                        \
    CAST(from, FT, WIDEN, bool, boolean)

CAST_FROM(f16, f16, WIDEN_F16)
CAST_FROM(f32, f32, WIDEN_FLOAT)
CAST_FROM(f64, f64, WIDEN_FLOAT)
CAST_FROM(i32, i32, WIDEN_INT)
CAST_FROM(i64, i64, WIDEN_INT)
CAST_FROM(u8, u8, WIDEN_INT)
CAST_FROM(bool, boolean, WIDEN_BOOL)

// ----- batch_norm -----
//
// scale = gamma / sqrt(var + eps); out = (x - mean) * scale + beta, each step rounded on its
// own as on the CPU. `x` and `out` are dense over `space`.

#define BATCH_NORM(sfx, T, ADD, SUB, MUL, DIV, SQRT)                                     \
    extern "C" __global__ void batch_norm_##sfx(T* out, const T* x, const T* mean,       \
                                                const T* var, const T* beta,             \
                                                const T* gamma, Space space, View vm,    \
                                                View vv, View vb, View vg, T eps, i64 n) { \
        GRID_STRIDE_LOOP(i, n) {                                                         \
            T scale = DIV(gamma[view_offset(space, vg, i)],                              \
                          SQRT(ADD(var[view_offset(space, vv, i)], eps)));               \
            T centred = SUB(x[i], mean[view_offset(space, vm, i)]);                      \
            out[i] = ADD(MUL(centred, scale), beta[view_offset(space, vb, i)]);          \
        }                                                                                \
    }
BATCH_NORM(f32, f32, __fadd_rn, __fsub_rn, __fmul_rn, __fdiv_rn, __fsqrt_rn)
BATCH_NORM(f64, f64, __dadd_rn, __dsub_rn, __dmul_rn, __ddiv_rn, __dsqrt_rn)
