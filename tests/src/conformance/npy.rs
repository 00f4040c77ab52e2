//! The `.npy` file format, version 1.0 (2.0 is read too): what the conformance cases are stored
//! in. Only what the case folders use: little-endian `<f2 <f4 <f8 <i4 <i8`, `|u1`, `|b1`, C
//! order, any rank including 0-d.

use std::path::Path;

use keras::{Array, backend::DType};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The `descr` string of `dtype` in a `.npy` header.
pub fn descr(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "<f2",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::U8 => "|u1",
        DType::Bool => "|b1",
    }
}

fn dtype_of(descr: &str) -> Option<DType> {
    // A 1-byte type has no byte order; NumPy writes `|` but `<`/`=` are also valid.
    let one_byte = |c: &str| ["|", "<", "=", ">"].iter().any(|p| descr == format!("{p}{c}"));
    match descr {
        "<f2" => Some(DType::F16),
        "<f4" => Some(DType::F32),
        "<f8" => Some(DType::F64),
        "<i4" => Some(DType::I32),
        "<i8" => Some(DType::I64),
        _ if one_byte("u1") => Some(DType::U8),
        _ if one_byte("b1") => Some(DType::Bool),
        _ => None,
    }
}

/// Reads a `.npy` file into an [`Array`]; the error names the file and what is wrong.
pub fn read(path: &Path) -> Result<Array, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses the bytes of a `.npy` file.
pub fn parse(bytes: &[u8]) -> Result<Array, String> {
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        major => return Err(format!("unsupported .npy format version {major}.{}", bytes[7])),
    };
    let data_start = header_start + header_len;
    let header = bytes.get(header_start..data_start).ok_or("the header is cut short")?;
    let header = std::str::from_utf8(header).map_err(|_| "the header is not text")?;
    let descr_text = quoted_value(header, "descr")?;
    let dtype = dtype_of(&descr_text).ok_or_else(|| format!("unsupported dtype {descr_text:?}"))?;
    match raw_value(header, "fortran_order")? {
        "False" => {}
        "True" => return Err("Fortran-ordered arrays are not supported".into()),
        other => return Err(format!("bad fortran_order {other:?}")),
    }
    let shape = parse_shape(raw_value(header, "shape")?)?;
    let data = bytes[data_start..].to_vec();
    Array::from_bytes(dtype, &shape, data).map_err(|e| e.to_string())
}

/// The text after `'key':` up to the next top-level `,` or `}` (a tuple counts as one value).
fn raw_value<'a>(header: &'a str, key: &str) -> Result<&'a str, String> {
    let pattern = format!("'{key}':");
    let start = header.find(&pattern).ok_or_else(|| format!("the header has no '{key}'"))? + pattern.len();
    let rest = header[start..].trim_start();
    let end = if rest.starts_with('(') { rest.find(')').map(|i| i + 1) } else { rest.find([',', '}']) };
    Ok(rest[..end.ok_or_else(|| format!("the value of '{key}' is not terminated"))?].trim())
}

fn quoted_value(header: &str, key: &str) -> Result<String, String> {
    let raw = raw_value(header, key)?;
    raw.strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .map(str::to_string)
        .ok_or_else(|| format!("'{key}' is not a quoted string: {raw}"))
}

fn parse_shape(raw: &str) -> Result<Vec<usize>, String> {
    let inner = raw.strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or_else(|| format!("bad shape {raw}"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>().map_err(|_| format!("bad shape {raw}")))
        .collect()
}

/// The bytes of a version 1.0 `.npy` file holding `array` (header padded to 64 bytes, as
/// NumPy writes it).
pub fn to_bytes(array: &Array) -> Vec<u8> {
    let shape = match array.shape() {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        dims => format!("({})", dims.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}", descr(array.dtype()));
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = MAGIC.to_vec();
    bytes.extend([1, 0]);
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(array.bytes());
    bytes
}

/// Writes `array` as a `.npy` file.
pub fn write(path: &Path, array: &Array) -> Result<(), String> {
    std::fs::write(path, to_bytes(array)).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        npy_ordered(descr, "False", shape, data)
    }

    fn npy_ordered(descr: &str, fortran: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let header = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}\n");
        let mut bytes = MAGIC.to_vec();
        bytes.extend([1, 0]);
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        bytes
    }

    #[test]
    fn reads_a_0d_float_array() {
        let array = parse(&npy("<f4", "()", &2.5f32.to_le_bytes())).unwrap();
        assert_eq!(array.shape(), &[] as &[usize]);
        assert_eq!(array.dtype(), DType::F32);
        assert_eq!(array.to_vec::<f32>().unwrap(), [2.5]);
    }

    #[test]
    fn reads_bool_and_integer_arrays() {
        let array = parse(&npy("|b1", "(3,)", &[1, 0, 1])).unwrap();
        assert_eq!(array.dtype(), DType::Bool);
        assert_eq!(array.to_f64_vec(), [1.0, 0.0, 1.0]);
        let data: Vec<u8> = [-1i64, 7, 9, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let array = parse(&npy("<i8", "(2, 2)", &data)).unwrap();
        assert_eq!((array.dtype(), array.shape()), (DType::I64, &[2usize, 2][..]));
        assert_eq!(array.to_vec::<i64>().unwrap(), [-1, 7, 9, 0]);
    }

    #[test]
    fn refuses_fortran_order_unknown_dtypes_and_short_data() {
        assert!(parse(&npy_ordered("<f4", "True", "(2, 2)", &[0; 16])).unwrap_err().contains("Fortran"));
        assert!(parse(&npy("<c8", "(1,)", &[0; 8])).unwrap_err().contains("unsupported dtype"));
        assert!(parse(&npy("<f4", "(2,)", &[0; 4])).is_err());
        assert!(parse(b"PK\x03\x04 not npy").unwrap_err().contains("magic"));
    }

    #[test]
    fn writes_what_it_reads_with_an_aligned_header() {
        for array in [
            Array::from_vec(&[2, 3], vec![1.0f64, -2.0, 3.5, f64::NAN, f64::INFINITY, 0.0]).unwrap(),
            Array::scalar(5i32),
            Array::from_bools(&[2], &[true, false]).unwrap(),
        ] {
            let bytes = to_bytes(&array);
            let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + header_len) % 64, 0, "NumPy aligns the data to 64 bytes");
            let back = parse(&bytes).unwrap();
            assert_eq!((back.dtype(), back.shape(), back.bytes()), (array.dtype(), array.shape(), array.bytes()));
        }
    }

    #[test]
    fn reads_the_case_files_of_the_project() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/keras1/tensorflow");
        let sum = read(&dir.join("sum_all.out.out.npy")).unwrap();
        assert_eq!((sum.dtype(), sum.ndim()), (DType::F32, 0));
        let any = read(&dir.join("any_all.out.out.npy")).unwrap();
        assert_eq!((any.dtype(), any.ndim()), (DType::U8, 0));
        let equal = read(&dir.join("equal_basic.out.out.npy")).unwrap();
        assert_eq!((equal.dtype(), equal.shape()), (DType::Bool, &[4usize][..]));
    }
}
