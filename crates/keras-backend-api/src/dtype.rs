//! Element types a buffer can hold.

use abi_stable::StableAbi;

/// The element type of a device buffer.
///
/// `F16` is a storage type: backends must support it in [`OpKind::Cast`](crate::OpKind::Cast),
/// data movement and upload/download; arithmetic on it is optional (query
/// [`Backend::supports`](crate::Backend::supports)).
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE 754 binary16.
    F16,
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary64.
    F64,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 8-bit integer.
    U8,
    /// Boolean, one byte per element holding 0 or 1.
    Bool,
}

impl DType {
    /// Every dtype of the contract, in declaration order.
    pub const ALL: [DType; 7] = [DType::F16, DType::F32, DType::F64, DType::I32, DType::I64, DType::U8, DType::Bool];

    /// Bytes per element.
    pub const fn size_in_bytes(self) -> usize {
        match self {
            DType::F16 => 2,
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::U8 | DType::Bool => 1,
        }
    }

    /// The Keras / NumPy name: `float16`, `float32`, `float64`, `int32`, `int64`, `uint8`, `bool`.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F16 => "float16",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// Parses a Keras / NumPy dtype name (the inverse of [`DType::name`]).
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// `true` for `F16`, `F32` and `F64`.
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::F32 | DType::F64)
    }

    /// `true` for `I32`, `I64` and `U8`.
    pub const fn is_integer(self) -> bool {
        matches!(self, DType::I32 | DType::I64 | DType::U8)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
