//! `keras-cli train` and `keras-cli evaluate` end to end: a short run learns, saved weights
//! score the same when reloaded, IDX files (plain or gzip'd) are read, and the `cpu` and `blas`
//! backends train the same network from the same seed.

use std::{collections::BTreeMap, fs, path::Path};

use keras_tests::{CliRun, run_cli, target_dir};

/// One `epoch k/n ...` line of `keras-cli train`.
#[derive(Debug, PartialEq)]
struct Epoch {
    loss: f64,
    accuracy: f64,
    test_loss: f64,
    test_accuracy: f64,
}

fn train(home: &Path, env: &[(&str, &str)], args: &[&str]) -> CliRun {
    let mut all = vec!["train"];
    all.extend(args);
    let run = run_cli(home, env, &all);
    assert!(run.success, "{run:?}");
    run
}

/// The number after `key` on `line` (`loss 0.1234` → 0.1234).
fn field(line: &str, key: &str) -> f64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.windows(key.split(' ').count()).position(|w| w.join(" ") == key).unwrap_or_else(|| {
        panic!("no `{key}` in {line:?}");
    });
    words[at + key.split(' ').count()].parse().unwrap()
}

fn epochs(run: &CliRun) -> Vec<Epoch> {
    run.stdout
        .lines()
        .filter(|l| l.starts_with("epoch "))
        .map(|l| Epoch {
            loss: field(l, "loss"),
            accuracy: field(l, "acc"),
            test_loss: field(l, "test loss"),
            test_accuracy: field(l, "test acc"),
        })
        .collect()
}

/// The accuracy on the last line, which must be exactly `test accuracy: 0.NNNN`.
fn final_accuracy(run: &CliRun) -> f64 {
    let last = run.stdout.lines().last().unwrap_or_default();
    let value = last.strip_prefix("test accuracy: ").unwrap_or_else(|| panic!("last line {last:?}: {run:?}"));
    assert!(value.len() == 6 && value.starts_with("0.") || value == "1.0000", "{last:?}");
    value.parse().unwrap()
}

/// How many images the run held out (`..., N for testing`).
fn test_count(run: &CliRun) -> usize {
    let line = run.stdout.lines().find(|l| l.starts_with("data: ")).expect("a data line");
    let before = line.strip_suffix(" for testing").unwrap_or_else(|| panic!("{line:?}"));
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_short_run_learns() {
    let home = tempfile::tempdir().unwrap();
    let run = train(home.path(), &[], &["--model", "mlp", "--epochs", "4", "--seed", "3"]);
    let history = epochs(&run);
    assert_eq!(history.len(), 4, "{run:?}");
    assert!(history[3].loss < history[0].loss / 2.0, "training loss should fall: {history:?}");
    assert!(history[3].test_loss < history[0].test_loss, "test loss should fall: {history:?}");
    assert!(final_accuracy(&run) > 0.80, "{run:?}");
    assert_eq!(final_accuracy(&run), history[3].test_accuracy);
    assert_eq!(test_count(&run), 359, "20% of the 1,797 digits are held out");
    assert!(run.stdout.lines().filter(|l| l.starts_with("epoch ")).all(|l| l.ends_with('s')), "epoch times: {run:?}");
    // stderr is not a terminal here: the progress bar stays hidden.
    assert!(run.stderr.is_empty(), "{run:?}");
}

#[test]
fn a_short_cnn_run_learns() {
    let home = tempfile::tempdir().unwrap();
    let run = train(home.path(), &[], &["--model", "cnn", "--epochs", "2", "--batch-size", "64"]);
    let history = epochs(&run);
    assert!(history[1].loss < history[0].loss, "{history:?}");
    assert!(final_accuracy(&run) > 0.80, "{run:?}");
}

/// One tensor of a safetensors file.
struct Stored {
    dtype: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// The tensors of a safetensors file by name, and its `__metadata__`, read by hand from the
/// format's definition (u64 header length, JSON header, little-endian data).
fn read_safetensors(path: &Path) -> (BTreeMap<String, Stored>, serde_json::Value) {
    let bytes = fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut tensors = BTreeMap::new();
    for (name, info) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        let shape: Vec<usize> =
            info["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        let offsets = info["data_offsets"].as_array().unwrap();
        let (start, end) = (offsets[0].as_u64().unwrap() as usize, offsets[1].as_u64().unwrap() as usize);
        let values = data[start..end].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        tensors.insert(name.clone(), Stored { dtype: info["dtype"].as_str().unwrap().to_string(), shape, values });
    }
    (tensors, header["__metadata__"].clone())
}

#[test]
fn saved_weights_reload_to_the_same_accuracy() {
    let home = tempfile::tempdir().unwrap();
    let weights = home.path().join("mlp.safetensors");
    let plot = home.path().join("curves.png");
    let run = train(
        home.path(),
        &[],
        &[
            "--model",
            "mlp",
            "--epochs",
            "3",
            "--seed",
            "7",
            "--save",
            weights.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
        ],
    );
    let trained = final_accuracy(&run);
    let last = epochs(&run).pop().unwrap();

    let (tensors, metadata) = read_safetensors(&weights);
    let shapes: Vec<(&str, &[usize])> = tensors.iter().map(|(n, t)| (n.as_str(), t.shape.as_slice())).collect();
    assert_eq!(
        shapes,
        [
            ("dense_1/bias", &[128][..]),
            ("dense_1/kernel", &[64, 128]),
            ("dense_2/bias", &[128]),
            ("dense_2/kernel", &[128, 128]),
            ("dense_3/bias", &[10]),
            ("dense_3/kernel", &[128, 10]),
        ]
    );
    assert!(tensors.values().all(|t| t.dtype == "F32" && t.values.iter().all(|v| v.is_finite())));
    // Glorot-uniform bounds hold only loosely after training, but a kernel left at zero would not.
    assert!(tensors["dense_1/kernel"].values.iter().any(|&v| v.abs() > 0.05));
    assert_eq!(metadata["keras-rs.model"], "mlp");
    assert_eq!(metadata["keras-rs.seed"], "7");

    let evaluated = run_cli(home.path(), &[], &["evaluate", "--load", weights.to_str().unwrap()]);
    assert!(evaluated.success, "{evaluated:?}");
    assert_eq!(final_accuracy(&evaluated), trained, "{evaluated:?}");
    let loss_line = evaluated.stdout.lines().find(|l| l.starts_with("test loss: ")).unwrap();
    assert_eq!(field(loss_line, "loss:"), last.test_loss, "{evaluated:?}");

    // The PNG: its signature, and the 1200×520 size in the IHDR chunk.
    let png = fs::read(&plot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1200);
    assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 520);
}

#[test]
fn evaluate_refuses_weights_of_another_model_naming_the_file() {
    let home = tempfile::tempdir().unwrap();
    let weights = home.path().join("mlp.safetensors");
    train(home.path(), &[], &["--model", "mlp", "--epochs", "1", "--save", weights.to_str().unwrap()]);
    let run = run_cli(home.path(), &[], &["evaluate", "--load", weights.to_str().unwrap(), "--model", "cnn"]);
    assert!(!run.success, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.starts_with(&format!("error: {}: has no weight `conv_1/kernel`", weights.display())), "{run:?}");

    let missing = home.path().join("nosuch.safetensors");
    let run = run_cli(home.path(), &[], &["evaluate", "--load", missing.to_str().unwrap()]);
    assert!(!run.success && run.stderr.starts_with(&format!("error: {}: cannot read", missing.display())), "{run:?}");
}

/// CRC-32 (IEEE, reflected), bit by bit: the gzip trailer's checksum.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A gzip file of `bytes` in stored (uncompressed) deflate blocks (RFC 1951 §3.2.4, RFC 1952).
fn gzip_stored(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let blocks: Vec<&[u8]> = bytes.chunks(65_535).collect();
    for (k, block) in blocks.iter().enumerate() {
        out.push((k + 1 == blocks.len()) as u8);
        let len = block.len() as u16;
        out.extend(len.to_le_bytes());
        out.extend((!len).to_le_bytes());
        out.extend(*block);
    }
    out.extend(crc32(bytes).to_le_bytes());
    out.extend((bytes.len() as u32).to_le_bytes());
    out
}

/// An IDX file of unsigned bytes.
fn idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend((d as u32).to_be_bytes());
    }
    out.extend(data);
    out
}

/// `count` 6×7 images of three classes, each a noisy stroke: class 0 a bright row, class 1 a
/// bright column, class 2 the diagonal; labels cycle 0, 1, 2.
fn strokes(count: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let (rows, cols) = (6, 7);
    let mut state = seed;
    let mut noise = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 59) as u8
    };
    let mut images = Vec::new();
    let labels: Vec<u8> = (0..count).map(|i| (i % 3) as u8).collect();
    for (i, &label) in labels.iter().enumerate() {
        let offset = i / 3 % 4;
        for r in 0..rows {
            for c in 0..cols {
                let on = match label {
                    0 => r == 1 + offset,
                    1 => c == 1 + offset,
                    _ => r == c || r + 1 == c,
                };
                images.push(if on { 200 + noise() } else { noise() });
            }
        }
    }
    (images, labels)
}

fn write_idx_set(dir: &Path, prefix: &str, count: usize, seed: u64, gz: bool, dotted: bool) {
    let (images, labels) = strokes(count, seed);
    let files = [("images", "idx3", idx(&[count, 6, 7], &images)), ("labels", "idx1", idx(&[count], &labels))];
    for (what, kind, bytes) in files {
        let separator = if dotted { "." } else { "-" };
        let name = format!("{prefix}-{what}{separator}{kind}-ubyte{}", if gz { ".gz" } else { "" });
        fs::write(dir.join(name), if gz { gzip_stored(&bytes) } else { bytes }).unwrap();
    }
}

#[test]
fn idx_files_plain_or_gzipped_train_alike() {
    let home = tempfile::tempdir().unwrap();
    let (plain, gzipped) = (home.path().join("plain"), home.path().join("gz"));
    for (dir, gz) in [(&plain, false), (&gzipped, true)] {
        fs::create_dir(dir).unwrap();
        write_idx_set(dir, "train", 90, 1, gz, false);
        write_idx_set(dir, "t10k", 30, 2, gz, false);
    }
    let args = |dir: &Path| {
        vec![
            "--model".to_string(),
            "mlp".into(),
            "--epochs".into(),
            "15".into(),
            "--data".into(),
            dir.display().to_string(),
        ]
    };
    let plain_run = train(home.path(), &[], &args(&plain).iter().map(String::as_str).collect::<Vec<_>>());
    let gz_run = train(home.path(), &[], &args(&gzipped).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(plain_run.stdout.contains("90 training images 6×7: 90 for training, 30 for testing"), "{plain_run:?}");
    assert_eq!(epochs(&plain_run), epochs(&gz_run), "the same bytes, gzip'd or not, train the same");
    assert!(final_accuracy(&plain_run) >= 0.9, "three clean strokes are easy: {plain_run:?}");

    // The convolutional network on images of another size than the digits' 8×8.
    let cnn_args = ["--model", "cnn", "--epochs", "6", "--data", plain.to_str().unwrap()];
    assert!(final_accuracy(&train(home.path(), &[], &cnn_args)) >= 0.9);
}

#[test]
fn idx_training_files_alone_are_split_and_bad_files_are_named() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("dotted");
    fs::create_dir(&dir).unwrap();
    write_idx_set(&dir, "train", 50, 3, true, true);
    let run = train(home.path(), &[], &["--model", "mlp", "--epochs", "1", "--data", dir.to_str().unwrap()]);
    assert_eq!(test_count(&run), 10, "20% of 50 held out: {run:?}");

    let labels = dir.join("train-labels.idx1-ubyte.gz");
    fs::write(&labels, gzip_stored(&idx(&[49], &[0; 49]))).unwrap();
    let run = run_cli(home.path(), &[], &["train", "--epochs", "1", "--data", dir.to_str().unwrap()]);
    assert!(!run.success, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.contains(&labels.display().to_string()) && run.stderr.contains("one per image"), "{run:?}");

    let empty = home.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let run = run_cli(home.path(), &[], &["train", "--data", empty.to_str().unwrap()]);
    assert!(!run.success && run.stderr.contains("no `train-images-idx3-ubyte`"), "{run:?}");
}

/// Both backends run plain SGD here, not the default Adam. Adam divides each update by the
/// root of its gradient's running square, so a weight whose gradient is mostly rounding noise
/// still moves by the full learning rate, in the direction the noise happens to point. Measured
/// on this CNN, two epochs of Adam on the *same* `cpu` backend at 1 and at 2 threads (which
/// changes only how some sums are split into partial sums) end up to 0.034 apart in the
/// weights, with a training accuracy two images apart. Compared under Adam, the backends would agree only
/// by luck. Under SGD the same two runs agree to 2e-7, so the bounds below test the backends.
#[test]
fn cpu_and_blas_train_the_same_network_from_the_same_seed() {
    let blas = target_dir().join(keras::registry::library_file_name("blas"));
    if !blas.is_file() {
        println!("skipped: {} is not built (cargo build -p backend-blas needs OpenBLAS)", blas.display());
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for backend in ["cpu", "blas"] {
        let weights = home.path().join(format!("{backend}.safetensors"));
        let save = weights.to_str().unwrap();
        let args = ["--model", "cnn", "--epochs", "2", "--seed", "1", "--optimizer", "sgd", "--save", save];
        let run = train(home.path(), &[("KERAS_BACKEND", backend)], &args);
        assert!(run.stdout.starts_with(&format!("backend: {backend} ")), "{run:?}");
        runs.push((run, read_safetensors(&weights).0));
    }
    let ((cpu, cpu_weights), (blas, blas_weights)) = (&runs[0], &runs[1]);
    for (a, b) in epochs(cpu).iter().zip(epochs(blas).iter()) {
        // Printed to 4 decimals: noise may move the last digit at most.
        for (x, y) in [(a.loss, b.loss), (a.test_loss, b.test_loss), (a.accuracy, b.accuracy)] {
            assert!((x - y).abs() <= 2e-4, "cpu {a:?} vs blas {b:?}");
        }
    }
    // One held-out image decided differently is as far as rounding can go.
    assert!((final_accuracy(cpu) - final_accuracy(blas)).abs() <= 1.0 / 359.0 + 1e-9, "{cpu:?} {blas:?}");
    // The same initial weights and dropout masks leave the trained weights equal but for noise.
    for (name, a) in cpu_weights {
        let b = &blas_weights[name].values;
        let worst = a.values.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{name}: cpu and blas differ by {worst}");
    }
}
