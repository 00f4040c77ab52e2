// Data movement: the strided copy behind permute, slice, concat, pad, reverse, tile and repeat;
// gather, scatter-add and their index check; one-hot; nearest resize. (Pad's border is
// elementwise.cu's fill.) The host side is ops/movement.rs, which keeps every signature below in
// step with its launches.
//
// Copies, gathers and resizes never look at the values, so they are instantiated per
// element size (u8 u16 u32 u64) and serve every dtype of that size.

// ----- strided copy -----

// out[out_view(p)] = x[x_view(p)] for every point p of `space` (n points).
#define COPY(T)                                                                                     \
    extern "C" __global__ void copy_##T(T* out, View out_view, const T* x, View x_view, Space space, \
                                        i64 n) {                                                    \
        GRID_STRIDE_LOOP(i, n) { out[view_offset(space, out_view, i)] = x[view_offset(space, x_view, i)]; } \
    }

COPY(u8)
COPY(u16)
COPY(u32)
COPY(u64)

// ----- index check (gather, scatter_add) -----

// Flags every index outside [-dim, dim) and records the first such position as `n - position`
// in *first_bad (zeroed by the host), so that atomicMax keeps the lowest position and the host
// can name the same index the cpu backend names. Runs before anything is written.
#define CHECK_INDICES(I)                                                                              \
    extern "C" __global__ void check_indices_##I(int* flag, u64* first_bad, const I* indices, i64 dim, \
                                                 i64 n) {                                             \
        GRID_STRIDE_LOOP(i, n) {                                                                      \
            i64 v = (i64)indices[i];                                                                  \
            if (v < 0) v += dim;                                                                      \
            if (v < 0 || v >= dim) {                                                                  \
                *flag = ERROR_INDEX_OUT_OF_RANGE;                                                     \
                atomicMax(first_bad, (u64)(n - i));                                                   \
            }                                                                                         \
        }                                                                                             \
    }

CHECK_INDICES(i32)
CHECK_INDICES(i64)

// ----- gather -----

// out [outer, count, inner] = x [outer, dim, inner] at the (checked) indices along the middle axis.
#define GATHER(T, I)                                                                                 \
    extern "C" __global__ void gather_##T##_##I(T* out, const T* x, const I* indices, i64 dim,       \
                                                i64 count, i64 inner, i64 n) {                       \
        GRID_STRIDE_LOOP(i, n) {                                                                     \
            i64 k = i % inner;                                                                       \
            i64 j = (i / inner) % count;                                                             \
            i64 o = i / (inner * count);                                                             \
            i64 v = (i64)indices[j];                                                                 \
            if (v < 0) v += dim;                                                                     \
            out[i] = x[(o * dim + v) * inner + k];                                                   \
        }                                                                                            \
    }

#define GATHER_ALL_SIZES(I) GATHER(u8, I) GATHER(u16, I) GATHER(u32, I) GATHER(u64, I)
GATHER_ALL_SIZES(i32)
GATHER_ALL_SIZES(i64)

// ----- scatter-add -----

// Atomic accumulation per dtype. Integers wrap like the cpu backend's wrapping add. Floats add in
// whatever order the threads reach the same element, so with repeated indices the rounding (and
// so the last bits) can differ from the cpu backend, which adds in index order.
__device__ __forceinline__ void atomic_add_f32(f32* p, f32 v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add_f64(f64* p, f64 v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add_i32(i32* p, i32 v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add_i64(i64* p, i64 v) {
    // Two's complement: unsigned addition wraps exactly as signed wrapping addition does.
    atomicAdd((unsigned long long*)p, (unsigned long long)v);
}

// Sub-word types go through a compare-and-swap loop on the aligned 32-bit word that holds them
// (device allocations are 256-byte aligned, so that word lies in the same allocation granule).
__device__ void atomic_add_u8(u8* p, u8 v) {
    u32* word = (u32*)((u64)p & ~3ull);
    u32 shift = (u32)((u64)p & 3ull) * 8u;
    u32 old = *word;
    u32 assumed;
    do {
        assumed = old;
        u32 sum = ((assumed >> shift) + (u32)v) & 0xFFu;
        u32 next = (assumed & ~(0xFFu << shift)) | (sum << shift);
        old = atomicCAS(word, assumed, next);
    } while (old != assumed);
}

// half's `+` on the cpu: widen both to f32, add, round to nearest even. An f32 sum of two halves
// rounded once more to half is the correctly rounded half sum (24 >= 2·11 + 2 bits).
__device__ void atomic_add_f16(f16* p, f16 v) {
    u32* word = (u32*)((u64)p & ~3ull);
    u32 shift = (u32)((u64)p & 2ull) * 8u;
    float add = f16_to_f32(v);
    u32 old = *word;
    u32 assumed;
    do {
        assumed = old;
        f16 current = (f16)((assumed >> shift) & 0xFFFFu);
        f16 sum = f32_to_f16(f16_to_f32(current) + add);
        u32 next = (assumed & ~(0xFFFFu << shift)) | ((u32)sum << shift);
        old = atomicCAS(word, assumed, next);
    } while (old != assumed);
}

// out [outer, dim, inner] (zeroed by the host) += updates [outer, count, inner] at the (checked)
// indices along the middle axis.
#define SCATTER_ADD(NAME, I)                                                                           \
    extern "C" __global__ void scatter_add_##NAME##_##I(NAME* out, const NAME* updates, const I* indices, \
                                                        i64 dim, i64 count, i64 inner, i64 n) {        \
        GRID_STRIDE_LOOP(i, n) {                                                                       \
            i64 k = i % inner;                                                                         \
            i64 j = (i / inner) % count;                                                               \
            i64 o = i / (inner * count);                                                               \
            i64 v = (i64)indices[j];                                                                   \
            if (v < 0) v += dim;                                                                       \
            atomic_add_##NAME(out + (o * dim + v) * inner + k, updates[i]);                            \
        }                                                                                              \
    }

#define SCATTER_ADD_ALL_TYPES(I) \
    SCATTER_ADD(f16, I) SCATTER_ADD(f32, I) SCATTER_ADD(f64, I) SCATTER_ADD(i32, I) SCATTER_ADD(i64, I) SCATTER_ADD(u8, I)
SCATTER_ADD_ALL_TYPES(i32)
SCATTER_ADD_ALL_TYPES(i64)

// ----- one-hot -----

// out [rows, depth]: the bits of 1 where k == indices[row], else 0 (all-zero bits is 0 in every
// dtype). A negative or too-large index matches no k.
#define ONE_HOT(T, I)                                                                                 \
    extern "C" __global__ void one_hot_##T##_##I(T* out, const I* indices, u64 one, i64 depth, i64 n) { \
        T on = (T)one;                                                                                \
        GRID_STRIDE_LOOP(i, n) {                                                                      \
            i64 k = i % depth;                                                                        \
            out[i] = ((i64)indices[i / depth] == k) ? on : (T)0;                                      \
        }                                                                                             \
    }

#define ONE_HOT_ALL_SIZES(I) ONE_HOT(u8, I) ONE_HOT(u16, I) ONE_HOT(u32, I) ONE_HOT(u64, I)
ONE_HOT_ALL_SIZES(i32)
ONE_HOT_ALL_SIZES(i64)

// ----- nearest resize -----

// floor(p · in / out) in exact integer arithmetic, as the cpu backend computes it (in u128 there).
// The 64-bit product serves unless it overflows; then the 128-bit product (hi, lo) is divided
// by shift-and-subtract (NVRTC has no __int128 without an extra flag). p < out, so the
// quotient is below `in` and fits in 64 bits, and hi < out. `carry` is the bit shifted out of
// the remainder: with it set the true remainder is >= 2^64 > out, and the wrapping subtraction
// gives the right value. (ops/movement.rs mirrors this loop in a unit test.)
__device__ __forceinline__ i64 nearest_source(i64 p, i64 in, i64 out) {
    u64 a = (u64)p;
    u64 b = (u64)in;
    u64 d = (u64)out;
    u64 hi = __umul64hi(a, b);
    u64 lo = a * b;
    if (hi == 0) return (i64)(lo / d);
    u64 r = hi;
    u64 q = 0;
    for (int bit = 63; bit >= 0; --bit) {
        u64 carry = r >> 63;
        r = (r << 1) | ((lo >> bit) & 1ull);
        q <<= 1;
        if (carry || r >= d) {
            r -= d;
            q |= 1ull;
        }
    }
    return (i64)q;
}

// out[.., p, ..] = x[.., floor(p · in / out), ..] on every axis: on the batch and channel axes
// in == out, where the formula gives p back, so the kernel needs no layout.
#define RESIZE_NEAREST(T)                                                                             \
    extern "C" __global__ void resize_nearest_##T(T* out, const T* x, Space out_space, Space x_space, \
                                                  i64 n) {                                            \
        GRID_STRIDE_LOOP(i, n) {                                                                      \
            i64 linear = i;                                                                           \
            i64 offset = 0;                                                                           \
            i64 stride = 1;                                                                           \
            for (int k = out_space.rank - 1; k >= 0; --k) {                                           \
                i64 d = out_space.dims[k];                                                            \
                i64 p = linear % d;                                                                   \
                linear /= d;                                                                          \
                offset += nearest_source(p, x_space.dims[k], d) * stride;                             \
                stride *= x_space.dims[k];                                                            \
            }                                                                                         \
            out[i] = x[offset];                                                                       \
        }                                                                                             \
    }

RESIZE_NEAREST(u8)
RESIZE_NEAREST(u16)
RESIZE_NEAREST(u32)
RESIZE_NEAREST(u64)
