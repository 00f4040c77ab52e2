// random: the contract's counter-based stream (keras-backend-api/src/random.rs).
//
// `philox4x32_10` and `sample` are line-by-line transcriptions of the contract's Rust
// functions of the same names; keep them that way (ops/random.rs's tests compile this part
// of the file with the host C++ compiler and compare it with the contract bit for bit).
// Element i of `out` is sample(kind, p0, p1, seed, counter, i) cast to out's dtype.
//
// The arithmetic that the Rust code rounds step by step uses the `__d*_rn` intrinsics, which
// are never contracted into an FMA. `log` and `cos` are CUDA's (within 1-2 ulp of glibc's), so
// a normal draw in f64 may differ from the CPU's in its last bits.

// BEGIN HOST-TESTABLE
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

// Distribution kinds, as ops/random.rs passes them.
#define DIST_UNIFORM 0
#define DIST_NORMAL 1
#define DIST_BERNOULLI 2

// The Philox4x32 block function with 10 rounds; `ctr` is replaced by the output block.
__device__ __forceinline__ void philox4x32_10(u32 ctr[4], u32 key_in[2]) {
    u32 key[2] = {key_in[0], key_in[1]};
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            key[0] = key[0] + PHILOX_W0;
            key[1] = key[1] + PHILOX_W1;
        }
        u64 p0 = (u64)PHILOX_M0 * (u64)ctr[0];
        u64 p1 = (u64)PHILOX_M1 * (u64)ctr[2];
        u32 next0 = ((u32)(p1 >> 32)) ^ ctr[1] ^ key[0];
        u32 next1 = (u32)p1;
        u32 next2 = ((u32)(p0 >> 32)) ^ ctr[3] ^ key[1];
        u32 next3 = (u32)p0;
        ctr[0] = next0;
        ctr[1] = next1;
        ctr[2] = next2;
        ctr[3] = next3;
    }
}

// 2^-24.
#define UNIT_24 (1.0 / 16777216.0)

__device__ __forceinline__ void philox_block(u64 seed, u64 counter, u64 block, u32 words[4]) {
    words[0] = (u32)block;
    words[1] = (u32)(block >> 32);
    words[2] = (u32)counter;
    words[3] = (u32)(counter >> 32);
    u32 key[2] = {(u32)seed, (u32)(seed >> 32)};
    philox4x32_10(words, key);
}

// Uniform: p0 = low, p1 = high. Normal: p0 = mean, p1 = stddev. Bernoulli: p0 = p.
__device__ __forceinline__ double sample(int kind, double p0, double p1, u64 seed, u64 counter, u64 index) {
    u32 words[4];
    if (kind == DIST_NORMAL) {
        philox_block(seed, counter, index / 2, words);
        int lane = 2 * (int)(index % 2);
        double u1 = ((double)(words[lane] >> 8) + 1.0) * UNIT_24;
        double u2 = (double)(words[lane + 1] >> 8) * UNIT_24;
        // mean + stddev * (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
        double radius = sqrt(__dmul_rn(-2.0, log(u1)));
        double angle = cos(__dmul_rn(2.0 * 3.141592653589793, u2));
        return __dadd_rn(p0, __dmul_rn(__dmul_rn(p1, radius), angle));
    }
    philox_block(seed, counter, index / 4, words);
    double u = (double)(words[index % 4] >> 8) * UNIT_24;
    if (kind == DIST_UNIFORM) {
        // low + (high - low) * u
        return __dadd_rn(p0, __dmul_rn(__dsub_rn(p1, p0), u));
    }
    return u < p0 ? 1.0 : 0.0;
}
// END HOST-TESTABLE

// f64 -> f16 as the CPU's `half::f16::from_f64` does on x86: through f32, with a NaN keeping
// its sign and top payload bits (draws are never NaN unless the parameters are infinite).
__device__ __forceinline__ f16 random_narrow_f16(double d) {
    float f = (float)d;
    u32 bits = __float_as_uint(f);
    if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0u) {
        return (f16)(((bits >> 16) & 0x8000u) | 0x7e00u | ((bits & 0x007fffffu) >> 13));
    }
    return f32_to_f16(f);
}

#define STORE_F16(d) random_narrow_f16(d)
#define STORE_F32(d) ((f32)(d))
#define STORE_F64(d) (d)

#define RANDOM(sfx, T, STORE)                                                            \
    extern "C" __global__ void random_##sfx(T* out, i64 n, u64 seed, u64 counter, i32 kind, \
                                            f64 p0, f64 p1) {                            \
        GRID_STRIDE_LOOP(i, n) { out[i] = STORE(sample(kind, p0, p1, seed, counter, (u64)i)); } \
    }
RANDOM(f16, f16, STORE_F16)
RANDOM(f32, f32, STORE_F32)
RANDOM(f64, f64, STORE_F64)
