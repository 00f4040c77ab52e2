//! random: the contract's Philox stream ([`keras_backend_api::random`]) on the device.
//!
//! `kernels/random.cu` transcribes the contract's `philox4x32_10` and `sample` line by line;
//! element `i` of `out` is `sample(dist, seed, counter, i)` cast to `out`'s dtype. The tests
//! below compile that part of the source with the host C++ compiler and compare it with the
//! contract bit for bit, so the transcription is checked without a GPU.

use keras_backend_api::{BackendError, DType, Distribution, TensorRef};

use crate::{Device, Result, device, device::Kernel, ops::dtype_suffix};

/// The distribution codes of `kernels/random.cu` (`DIST_*`).
const DIST_UNIFORM: i32 = 0;
const DIST_NORMAL: i32 = 1;
const DIST_BERNOULLI: i32 = 2;

/// The kernel's `(kind, p0, p1)` for `dist`.
fn kernel_params(dist: Distribution) -> (i32, f64, f64) {
    match dist {
        Distribution::Uniform { low, high } => (DIST_UNIFORM, low, high),
        Distribution::Normal { mean, stddev } => (DIST_NORMAL, mean, stddev),
        Distribution::Bernoulli { p } => (DIST_BERNOULLI, p, 0.0),
    }
}

/// Fills the float `out` from the stream `(seed, counter)`: element `i` is
/// `keras_backend_api::random::sample(dist, seed, counter, i)` cast to `out`'s dtype (F16 as
/// well as F32 and F64, like the cpu backend).
pub fn random(device: &Device, dist: Distribution, seed: u64, counter: u64, out: TensorRef<'_>) -> Result<()> {
    let o = device.operand("random", "out", out)?;
    dist.check()?;
    if !matches!(o.dtype, DType::F16 | DType::F32 | DType::F64) {
        return Err(BackendError::invalid(format!("random({dist:?}): out is {} but must be a float dtype", o.dtype)));
    }
    if o.len == 0 {
        return Ok(());
    }
    let (kind, p0, p1) = kernel_params(dist);
    let name = format!("random_{}", dtype_suffix(o.dtype));
    let n = o.len as i64;
    crate::launch!(
        device,
        Kernel { module: "random", function: &name },
        device::grid_1d(o.len);
        o.ptr, n, seed, counter, kind, p0, p1
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use keras_backend_api::random::{philox4x32_10, sample};
    use std::{
        path::{Path, PathBuf},
        process::Command,
    };

    const SOURCE: &str = include_str!("../kernels/random.cu");

    /// The text between the `BEGIN/END HOST-TESTABLE` markers of `random.cu`.
    fn host_testable() -> &'static str {
        let start = SOURCE.find("// BEGIN HOST-TESTABLE").expect("begin marker");
        let end = SOURCE.find("// END HOST-TESTABLE").expect("end marker");
        &SOURCE[start..end]
    }

    /// Definitions that let the device code compile as host C++: plain IEEE operations
    /// (compiled without contraction) stand in for the round-to-nearest intrinsics.
    const SHIM: &str = r#"
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
typedef unsigned int u32;
typedef unsigned long long u64;
#define __device__
#define __forceinline__ inline
static double __dmul_rn(double a, double b) { return a * b; }
static double __dadd_rn(double a, double b) { return a + b; }
static double __dsub_rn(double a, double b) { return a - b; }
using std::cos; using std::log; using std::sqrt;
"#;

    /// Reads lines `P c0 c1 c2 c3 k0 k1` (Philox words, hex) or `S kind p0 p1 seed counter
    /// index` (doubles as hex bits) and prints the results as hex.
    const DRIVER: &str = r#"
int main() {
    char op[2];
    while (std::scanf("%1s", op) == 1) {
        if (op[0] == 'P') {
            u32 c[4], k[2];
            if (std::scanf("%x %x %x %x %x %x", &c[0], &c[1], &c[2], &c[3], &k[0], &k[1]) != 6) return 2;
            philox4x32_10(c, k);
            std::printf("%08x %08x %08x %08x\n", c[0], c[1], c[2], c[3]);
        } else {
            int kind;
            u64 b0, b1, seed, counter, index;
            if (std::scanf("%d %llx %llx %llx %llx %llx", &kind, &b0, &b1, &seed, &counter, &index) != 6) return 2;
            double p0, p1;
            std::memcpy(&p0, &b0, 8);
            std::memcpy(&p1, &b1, 8);
            double r = sample(kind, p0, p1, seed, counter, index);
            u64 bits;
            std::memcpy(&bits, &r, 8);
            std::printf("%016llx\n", bits);
        }
    }
    return 0;
}
"#;

    fn host_compiler() -> Option<String> {
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
        Command::new(&cxx).arg("--version").output().ok().filter(|o| o.status.success()).map(|_| cxx)
    }

    /// Compiles the host-testable part of `random.cu`; `None` (the test skips) without a C++
    /// compiler.
    fn build_host_copy() -> Option<PathBuf> {
        let Some(cxx) = host_compiler() else {
            eprintln!("skipped: no host C++ compiler (`c++` or $CXX) to compile random.cu's Philox with");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("keras-cuda-random-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("random_host.cpp");
        std::fs::write(&src, format!("{SHIM}\n{}\n{DRIVER}", host_testable())).unwrap();
        let exe = dir.join("random_host");
        let output = Command::new(&cxx)
            .args(["-std=c++17", "-O1", "-ffp-contract=off", "-o"])
            .arg(&exe)
            .arg(&src)
            .arg("-lm")
            .output()
            .expect("the C++ compiler runs");
        assert!(
            output.status.success(),
            "compiling random.cu on the host: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Some(exe)
    }

    fn run(exe: &Path, input: &str) -> Vec<String> {
        // Through a file: writing a long input to a pipe while the child fills the other one
        // would deadlock.
        let path = exe.with_extension("in");
        std::fs::write(&path, input).unwrap();
        let output = Command::new(exe).stdin(std::fs::File::open(&path).unwrap()).output().expect("the host copy runs");
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap().lines().map(str::to_string).collect()
    }

    #[test]
    fn constants_match_the_contract() {
        for (name, value) in [
            ("PHILOX_M0", "0xD2511F53u"),
            ("PHILOX_M1", "0xCD9E8D57u"),
            ("PHILOX_W0", "0x9E3779B9u"),
            ("PHILOX_W1", "0xBB67AE85u"),
        ] {
            assert!(SOURCE.contains(&format!("#define {name} {value}")), "{name}");
        }
        for (name, value) in
            [("DIST_UNIFORM", DIST_UNIFORM), ("DIST_NORMAL", DIST_NORMAL), ("DIST_BERNOULLI", DIST_BERNOULLI)]
        {
            assert!(SOURCE.contains(&format!("#define {name} {value}\n")), "{name}");
        }
    }

    #[test]
    fn host_compiled_kernel_code_matches_the_contract_bit_for_bit() {
        let Some(exe) = build_host_copy() else { return };
        let blocks: Vec<([u32; 4], [u32; 2])> = vec![
            ([0; 4], [0; 2]),
            ([u32::MAX; 4], [u32::MAX; 2]),
            ([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
            ([1, 2, 3, 4], [5, 6]),
        ];
        let input: String = blocks
            .iter()
            .map(|(c, k)| format!("P {:x} {:x} {:x} {:x} {:x} {:x}\n", c[0], c[1], c[2], c[3], k[0], k[1]))
            .collect();
        let got = run(&exe, &input);
        for ((c, k), line) in blocks.iter().zip(&got) {
            let w = philox4x32_10(*c, *k);
            assert_eq!(line, &format!("{:08x} {:08x} {:08x} {:08x}", w[0], w[1], w[2], w[3]), "{c:x?} {k:x?}");
        }

        let dists = [
            Distribution::Uniform { low: -2.0, high: 3.0 },
            Distribution::Uniform { low: 0.0, high: 1.0 },
            Distribution::Normal { mean: 1.0, stddev: 0.5 },
            Distribution::Normal { mean: -3.25, stddev: 7.0 },
            Distribution::Bernoulli { p: 0.3 },
        ];
        let streams: [(u64, u64); 4] = [(0, 0), (11, 3), (u64::MAX, 1 << 40), (0x1234_5678_9abc_def0, u64::MAX)];
        let indices: Vec<u64> = (0..600).chain([1 << 32, (1 << 33) + 5, u64::MAX - 1, u64::MAX]).collect();
        let mut cases = Vec::new();
        for dist in dists {
            for &(seed, counter) in &streams {
                for &i in &indices {
                    cases.push((dist, seed, counter, i));
                }
            }
        }
        let input: String = cases
            .iter()
            .map(|&(dist, seed, counter, i)| {
                let (kind, p0, p1) = kernel_params(dist);
                format!("S {kind} {:x} {:x} {seed:x} {counter:x} {i:x}\n", p0.to_bits(), p1.to_bits())
            })
            .collect();
        let got = run(&exe, &input);
        assert_eq!(got.len(), cases.len());
        for (&(dist, seed, counter, i), line) in cases.iter().zip(&got) {
            let want = sample(dist, seed, counter, i);
            assert_eq!(line, &format!("{:016x}", want.to_bits()), "{dist:?} seed {seed} counter {counter} index {i}");
        }
        let _ = std::fs::remove_dir_all(exe.parent().unwrap());
    }
}
