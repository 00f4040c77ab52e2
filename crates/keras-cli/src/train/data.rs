//! The data `keras-cli train` learns from: the embedded UCI digits (8×8, 10 classes) or MNIST-
//! format IDX files, as images scaled to [0, 1] with integer labels, split into train and test.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use flate2::read::MultiGzDecoder;
use keras::Error;

use super::{Rng, file_error};

/// scikit-learn's copy of the UCI optical digits (see `data/digits/README.md`).
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../../../data/digits/digits.csv.gz");

/// The part of a [`Dataset`] held out for testing when it has no test files of its own.
pub const TEST_FRACTION: f64 = 0.2;

/// Labelled greyscale images, pixels scaled to [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// `len × rows × cols` pixels, row major.
    pub pixels: Vec<f32>,
    /// One class per image, each below `classes`.
    pub labels: Vec<usize>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// Number of classes (largest label + 1 over the whole data set).
    pub classes: usize,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Pixels per image.
    pub fn features(&self) -> usize {
        self.rows * self.cols
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let f = self.features();
        Dataset {
            pixels: indices.iter().flat_map(|&i| self.pixels[i * f..(i + 1) * f].iter().copied()).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            ..*self
        }
    }
}

/// A training set and the held-out set it is scored on.
#[derive(Clone, Debug)]
pub struct Split {
    /// What the model learns from.
    pub train: Dataset,
    /// What it is scored on, never trained on.
    pub test: Dataset,
    /// Where the data came from, for the report.
    pub source: String,
}

/// The embedded digits, or the IDX files in `dir`, split for training; `seed` fixes which
/// digits are held out (IDX data brings its own `t10k` test files when present).
pub fn load(dir: Option<&Path>, seed: u64) -> Result<Split, Error> {
    match dir {
        None => {
            let all = parse_digits(DIGITS_CSV_GZ).map_err(|m| file_error("digits.csv.gz (embedded)", m))?;
            let source = format!("UCI digits (embedded), {} images {}×{}", all.len(), all.rows, all.cols);
            Ok(split_held_out(&all, seed, source))
        }
        Some(dir) => load_idx_dir(dir, seed),
    }
}

/// `round(len · TEST_FRACTION)` images, chosen by a shuffle seeded with `seed`, are held out.
fn split_held_out(all: &Dataset, seed: u64, source: String) -> Split {
    let mut order: Vec<usize> = (0..all.len()).collect();
    Rng::new(seed, Rng::SPLIT).shuffle(&mut order);
    let test_len = (all.len() as f64 * TEST_FRACTION).round() as usize;
    let (test, train) = order.split_at(test_len);
    Split { train: all.select(train), test: all.select(test), source }
}

/// Parses the digits CSV (gzip'd): 64 pixels 0..16 then the class, per line.
fn parse_digits(gz: &[u8]) -> Result<Dataset, String> {
    let text = String::from_utf8(gunzip(gz)?).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let values: Vec<u32> = line
            .split(',')
            .map(|v| v.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("line {}: {e}", n + 1))?;
        if values.len() != 65 || values[..64].iter().any(|&v| v > 16) || values[64] > 9 {
            return Err(format!("line {}: expected 64 pixels in 0..=16 and a class in 0..=9", n + 1));
        }
        pixels.extend(values[..64].iter().map(|&v| v as f32 / 16.0));
        labels.push(values[64] as usize);
    }
    Ok(Dataset { pixels, labels, rows: 8, cols: 8, classes: 10 })
}

/// The bytes of a gzip stream (all members), or `bytes` unchanged when they are not gzip'd.
fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::new();
    MultiGzDecoder::new(bytes).read_to_end(&mut out).map_err(|e| format!("bad gzip data: {e}"))?;
    Ok(out)
}

/// An IDX array (the MNIST file format): unsigned bytes and their dimensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    /// The dimensions, outermost first.
    pub dims: Vec<usize>,
    /// The values, row major.
    pub data: Vec<u8>,
}

/// Parses an IDX file (gzip'd or not): magic `0 0 0x08 ndim`, `ndim` big-endian u32 sizes, then
/// the bytes. Only the unsigned-byte type (0x08) is read: the MNIST family uses no other.
pub fn parse_idx(bytes: &[u8]) -> Result<Idx, String> {
    let bytes = gunzip(bytes)?;
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err("not an IDX file (the first two bytes must be 0)".to_string());
    }
    if bytes[2] != 0x08 {
        return Err(format!("IDX type 0x{:02x} is not supported, only unsigned bytes (0x08)", bytes[2]));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if ndim == 0 || bytes.len() < header {
        return Err(format!("IDX header of {ndim} dimensions is truncated or empty"));
    }
    let dims: Vec<usize> =
        bytes[4..header].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let len = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or("IDX dimensions overflow")?;
    let body = &bytes[header..];
    if body.len() != len {
        return Err(format!("IDX dimensions {dims:?} need {len} bytes of data, the file has {}", body.len()));
    }
    Ok(Idx { dims, data: body.to_vec() })
}

/// The file of `stem` in `dir`: `stem`, `stem.gz`, or the same with `-idx` spelt `.idx`
/// (`train-images.idx3-ubyte`: both spellings of the MNIST names are in use); `None` if none.
fn find_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [stem.to_string(), stem.replace("-idx", ".idx")]
        .into_iter()
        .flat_map(|name| [name.clone(), format!("{name}.gz")])
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

fn read_idx_file(path: &Path) -> Result<Idx, Error> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    parse_idx(&bytes).map_err(|m| file_error(path, m))
}

/// Images and labels of one IDX pair; `None` when neither file is in `dir`.
fn read_idx_pair(dir: &Path, prefix: &str) -> Result<Option<(Idx, Idx, PathBuf)>, Error> {
    let images = find_file(dir, &format!("{prefix}-images-idx3-ubyte"));
    let labels = find_file(dir, &format!("{prefix}-labels-idx1-ubyte"));
    match (images, labels) {
        (None, None) => Ok(None),
        (Some(images), Some(labels)) => {
            let (x, y) = (read_idx_file(&images)?, read_idx_file(&labels)?);
            if x.dims.len() != 3 {
                return Err(file_error(&images, format!("images must have 3 dimensions, got {:?}", x.dims)));
            }
            if y.dims.len() != 1 || y.dims[0] != x.dims[0] {
                return Err(file_error(
                    &labels,
                    format!("labels {:?} must be one per image of {}", y.dims, images.display()),
                ));
            }
            Ok(Some((x, y, images)))
        }
        (Some(images), None) => Err(file_error(&images, format!("no `{prefix}-labels-idx1-ubyte` file beside it"))),
        (None, Some(labels)) => Err(file_error(&labels, format!("no `{prefix}-images-idx3-ubyte` file beside it"))),
    }
}

/// MNIST-format data in `dir`: `train-images-idx3-ubyte` and `train-labels-idx1-ubyte` (each
/// maybe `.gz`), and `t10k-…` as the test set, else a held-out part of the training files.
fn load_idx_dir(dir: &Path, seed: u64) -> Result<Split, Error> {
    let (train_x, train_y, train_path) = read_idx_pair(dir, "train")?.ok_or_else(|| {
        file_error(dir, "no `train-images-idx3-ubyte` and `train-labels-idx1-ubyte` files (plain or .gz)")
    })?;
    let test = read_idx_pair(dir, "t10k")?;
    let (rows, cols) = (train_x.dims[1], train_x.dims[2]);
    if let Some((test_x, _, path)) = &test
        && test_x.dims[1..] != train_x.dims[1..]
    {
        return Err(file_error(path, format!("images are {:?}, the training images {:?}", test_x.dims, train_x.dims)));
    }
    let largest = train_y.data.iter().chain(test.iter().flat_map(|(_, y, _)| &y.data)).copied().max().unwrap_or(0);
    let classes = (largest as usize + 1).max(2);
    let dataset = |x: &Idx, y: &Idx| Dataset {
        pixels: x.data.iter().map(|&v| v as f32 / 255.0).collect(),
        labels: y.data.iter().map(|&v| v as usize).collect(),
        rows,
        cols,
        classes,
    };
    let train = dataset(&train_x, &train_y);
    if train.len() == 0 {
        return Err(file_error(&train_path, "holds no images"));
    }
    let source = format!("IDX files in {}, {} training images {rows}×{cols}", dir.display(), train.len());
    Ok(match test {
        Some((x, y, _)) => Split { test: dataset(&x, &y), train, source },
        None => split_held_out(&train, seed, source),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{Compression, write::GzEncoder};

    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            bytes.extend(d.to_be_bytes());
        }
        bytes.extend(data);
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn idx_reads_plain_and_gzip_alike() {
        let file = idx(&[2, 1, 3], &[1, 2, 3, 4, 5, 6]);
        let want = Idx { dims: vec![2, 1, 3], data: vec![1, 2, 3, 4, 5, 6] };
        assert_eq!(parse_idx(&file).unwrap(), want);
        assert_eq!(parse_idx(&gzip(&file)).unwrap(), want);
    }

    #[test]
    fn idx_refuses_bad_files_with_the_reason() {
        assert!(parse_idx(&[1, 0, 8, 1]).unwrap_err().contains("not an IDX file"));
        assert!(parse_idx(&idx(&[2], &[1, 2])[..6]).unwrap_err().contains("truncated"));
        assert!(parse_idx(&idx(&[3], &[1, 2])).unwrap_err().contains("need 3 bytes of data, the file has 2"));
        let mut floats = idx(&[1], &[0, 0, 0, 0]);
        floats[2] = 0x0d;
        assert!(parse_idx(&floats).unwrap_err().contains("0x0d is not supported"));
    }

    #[test]
    fn the_embedded_digits_are_sklearns() {
        let digits = parse_digits(DIGITS_CSV_GZ).unwrap();
        assert_eq!(digits.len(), 1797);
        assert_eq!(digits.pixels.len(), 1797 * 64);
        // sklearn's load_digits(): 178 zeros, ..., first image's row 0 is 0 0 5 13 9 1 0 0.
        assert_eq!(digits.labels.iter().filter(|&&l| l == 0).count(), 178);
        assert_eq!(&digits.pixels[..8], &[0.0, 0.0, 5.0 / 16.0, 13.0 / 16.0, 9.0 / 16.0, 1.0 / 16.0, 0.0, 0.0]);
        assert_eq!(digits.labels[..3], [0, 1, 2]);
    }

    #[test]
    fn the_split_is_a_partition_fixed_by_the_seed() {
        let all = parse_digits(DIGITS_CSV_GZ).unwrap();
        let a = split_held_out(&all, 1, String::new());
        let b = split_held_out(&all, 1, String::new());
        let c = split_held_out(&all, 2, String::new());
        assert_eq!((a.train.len(), a.test.len()), (1438, 359));
        assert_eq!(a.test, b.test);
        assert_ne!(a.test.labels, c.test.labels);
        let count = |d: &Dataset, class| d.labels.iter().filter(|&&l| l == class).count();
        for class in 0..10 {
            assert_eq!(count(&a.train, class) + count(&a.test, class), count(&all, class));
        }
    }
}
