//! The host side of each op family: check the arguments against the contract's shape rules,
//! build the index spaces, launch the family's kernels.

pub mod conv;
pub mod elementwise;
pub mod matmul;
pub mod movement;
pub mod pool;
pub mod random;
pub mod reduce;
pub mod window;

use keras_backend_api::{BackendError, DType, TensorRef};

use crate::Result;

/// Refuses an `out` that is also one of `inputs`, with the cpu backend's message: every kernel
/// but the element-wise ones that may work in place (unary, binary, select's branches) reads
/// elements that other threads write.
pub(crate) fn refuse_alias(kernel: &str, inputs: &[TensorRef<'_>], out: TensorRef<'_>) -> Result<()> {
    if inputs.iter().any(|t| t.buffer == out.buffer) {
        return Err(BackendError::invalid(format!(
            "{kernel}: the output buffer {} is also an input; this kernel cannot work in place",
            out.buffer.0
        )));
    }
    Ok(())
}

/// The suffix of a kernel instantiated for `dtype` (`exp_f32`, `add_i64`...). Matches the
/// typedef names of `common.cuh`.
pub fn dtype_suffix(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "f16",
        DType::F32 => "f32",
        DType::F64 => "f64",
        DType::I32 => "i32",
        DType::I64 => "i64",
        DType::U8 => "u8",
        DType::Bool => "bool",
    }
}

/// The suffix of the dtype-agnostic kernels (copies, gathers) that move elements of `dtype`'s
/// size as unsigned integers: `u8`, `u16`, `u32` or `u64`.
pub fn bits_suffix(dtype: DType) -> &'static str {
    match dtype.size_in_bytes() {
        1 => "u8",
        2 => "u16",
        4 => "u32",
        _ => "u64",
    }
}
