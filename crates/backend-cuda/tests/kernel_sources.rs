//! Every kernel source compiles with NVRTC for sm_80 and sm_90, and `ptxas` assembles the PTX.
//! Needs no GPU: NVRTC and ptxas come from PyPI's `nvidia-cuda-nvrtc` and `nvidia-cuda-nvcc`
//! wheels, which `.ci/run` installs (`scripts/cuda-tools.sh`). Without them the test says why it
//! skips, except under CI (`CI=true`), where missing tools fail it.

use std::{path::PathBuf, process::Command};

use backend_cuda::{kernels, libraries};

const ARCHES: [&str; 2] = ["sm_80", "sm_90"];

fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn ptxas() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KERAS_PTXAS") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("ptxas")).find(|p| p.is_file())
}

#[test]
fn every_kernel_source_compiles_and_assembles() {
    if !libraries::nvrtc_present() {
        let why = "NVRTC (libnvrtc.so.13) is not on the library path; scripts/cuda-tools.sh installs it";
        assert!(!required(), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    let assembler = ptxas();
    if assembler.is_none() {
        let why = "ptxas is not on PATH and KERAS_PTXAS is unset; scripts/cuda-tools.sh installs it";
        assert!(!required(), "{why}");
        eprintln!("ptxas step skipped: {why}");
    }
    let dir = std::env::temp_dir().join(format!("keras-cuda-ptx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut failures = Vec::new();
    for source in kernels::SOURCES {
        for arch in ARCHES {
            let ptx = match kernels::compile(source, arch) {
                Ok(ptx) => ptx.to_src(),
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            assert!(
                ptx.contains(".entry") || !source.code.contains("__global__"),
                "{}: no kernel in the PTX",
                source.name
            );
            let Some(assembler) = &assembler else { continue };
            let ptx_path = dir.join(format!("{}-{arch}.ptx", source.name));
            std::fs::write(&ptx_path, &ptx).unwrap();
            let output = Command::new(assembler)
                .arg(format!("-arch={arch}"))
                .arg(&ptx_path)
                .arg("-o")
                .arg(dir.join(format!("{}-{arch}.cubin", source.name)))
                .output()
                .expect("ptxas runs");
            if !output.status.success() {
                failures.push(format!(
                    "ptxas -arch={arch} rejected `{}`: {}",
                    source.name,
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
        }
        eprintln!("{}: compiled for {ARCHES:?}", source.name);
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
