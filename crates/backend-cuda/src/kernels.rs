//! The CUDA C sources of the kernels, compiled at run time with NVRTC for the device's
//! architecture and cached per architecture.
//!
//! Each source is one op family (`kernels/*.cu`), compiled as one module with
//! `kernels/common.cuh` prepended. Kernels are plain `extern "C"` functions, one per
//! op × element type, named `<op>_<dtype>` (`exp_f32`, `copy_u16`...), so the host finds them
//! by name without C++ mangling. The CI checks that every source compiles for `sm_80` and
//! `sm_90` and that `ptxas` accepts the result (`tests/kernel_sources.rs`).

use std::path::PathBuf;

use cudarc::nvrtc::{CompileOptions, Ptx, compile_ptx_with_opts};

/// One kernel source: an op family.
#[derive(Debug)]
pub struct Source {
    /// Module name (the file stem).
    pub name: &'static str,
    /// CUDA C text, without the common header.
    pub code: &'static str,
}

/// The header every source is compiled with.
pub const COMMON: &str = include_str!("kernels/common.cuh");

/// Every kernel source of the backend.
pub const SOURCES: &[Source] = &[
    Source { name: "elementwise", code: include_str!("kernels/elementwise.cu") },
    Source { name: "reduce", code: include_str!("kernels/reduce.cu") },
    Source { name: "movement", code: include_str!("kernels/movement.cu") },
    Source { name: "random", code: include_str!("kernels/random.cu") },
    Source { name: "conv", code: include_str!("kernels/conv.cu") },
    Source { name: "pool", code: include_str!("kernels/pool.cu") },
];

/// The source named `name`.
pub fn source(name: &str) -> Option<&'static Source> {
    SOURCES.iter().find(|s| s.name == name)
}

/// The text NVRTC compiles for `source`: the common header, then the source.
pub fn full_text(source: &Source) -> String {
    format!("{COMMON}\n// ----- {}.cu -----\n{}", source.name, source.code)
}

/// The oldest device architecture the kernels are compiled for: NVRTC 13 targets `sm_75`
/// (Turing) and newer.
pub const MIN_CAPABILITY: u32 = 75;

/// The PTX virtual architecture for a device architecture: `sm_90` → `compute_90`. An error
/// names an architecture that is not of the form `sm_XY` or is older than [`MIN_CAPABILITY`].
pub fn virtual_arch(arch: &str) -> Result<String, String> {
    let capability = arch
        .strip_prefix("sm_")
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<u32>().ok())
        .ok_or_else(|| format!("cuda: `{arch}` is not a device architecture of the form sm_XY"))?;
    if capability < MIN_CAPABILITY {
        return Err(format!(
            "cuda: the device's compute capability {}.{} ({arch}) is not supported: the kernels are \
             compiled with NVRTC 13, which targets sm_{MIN_CAPABILITY} and newer",
            capability / 10,
            capability % 10
        ));
    }
    Ok(format!("compute_{capability}"))
}

/// Compiles `source` to PTX for `arch` (`sm_XY`). NVRTC must be loadable
/// ([`crate::libraries::nvrtc_present`]); the error carries NVRTC's log, or says why `arch` is
/// not supported ([`virtual_arch`]).
pub fn compile(source: &Source, arch: &str) -> Result<Ptx, String> {
    // `CompileOptions::arch` wants a `&'static str`; the same option passed as an owned string
    // among the free-form options needs nothing kept alive after the compile.
    let options = CompileOptions {
        name: Some(format!("{}.cu", source.name)),
        options: vec![format!("--gpu-architecture={}", virtual_arch(arch)?), "--std=c++17".into()],
        ..Default::default()
    };
    compile_ptx_with_opts(full_text(source), options)
        .map_err(|e| format!("cuda: compiling kernel source `{}` for {arch} failed: {e:?}", source.name))
}

/// [`compile`] through a disk cache in `$KERAS_HOME/cache/cuda/<arch>/` (`~/.keras` when
/// `KERAS_HOME` is unset), keyed by a hash of the text. The cache is an optimisation only: any
/// failure to read or write it falls back to compiling.
pub fn compile_cached(source: &Source, arch: &str) -> Result<Ptx, String> {
    let path = cache_dir(arch).map(|dir| dir.join(format!("{}-{:016x}.ptx", source.name, fnv1a(&full_text(source)))));
    if let Some(text) = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
        return Ok(Ptx::from_src(text));
    }
    let ptx = compile(source, arch)?;
    if let Some(path) = path
        && let Some(dir) = path.parent()
        && std::fs::create_dir_all(dir).is_ok()
    {
        // A failed write only costs a compile next time.
        let _ = std::fs::write(&path, ptx.to_src());
    }
    Ok(ptx)
}

fn cache_dir(arch: &str) -> Option<PathBuf> {
    let home =
        std::env::var_os("KERAS_HOME").map(PathBuf::from).or_else(|| dirs::home_dir().map(|h| h.join(".keras")))?;
    Some(home.join("cache").join("cuda").join(arch))
}

/// 64-bit FNV-1a: a hash that stays the same across Rust versions, for cache file names.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_arch_maps_supported_devices_and_refuses_the_rest() {
        assert_eq!(virtual_arch("sm_90").unwrap(), "compute_90");
        assert_eq!(virtual_arch("sm_75").unwrap(), "compute_75");
        assert_eq!(virtual_arch("sm_120").unwrap(), "compute_120");
        let e = virtual_arch("sm_70").unwrap_err();
        assert!(e.contains("compute capability 7.0 (sm_70) is not supported") && e.contains("sm_75"), "{e}");
        for bad in ["", "sm_", "sm_9x", "compute_90", "sm_-1", "sm_99999999999"] {
            assert!(virtual_arch(bad).unwrap_err().contains("not a device architecture"), "{bad}");
        }
    }

    #[test]
    fn an_unsupported_device_is_an_error_before_nvrtc_is_asked() {
        // virtual_arch fails first, so this needs no NVRTC on the machine.
        let e = compile(source("elementwise").unwrap(), "sm_61").unwrap_err();
        assert!(e.contains("(sm_61) is not supported"), "{e}");
    }
}
