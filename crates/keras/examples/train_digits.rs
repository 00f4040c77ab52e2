//! Training a small convolutional network on the UCI digits with the K API alone: placeholders,
//! variables, `conv2d`, `pool2d`, `dot`, `relu`, `dropout` in the learning phase, `softmax`,
//! `categorical_crossentropy`, `gradients`, and a `function` whose updates are SGD with momentum.
//!
//! ```text
//! cargo run --release -p keras --example train_digits
//! ```
//!
//! `keras-cli train` is the full tool (Adam, progress bars, plots, saved weights); this is the
//! same loop in one page. The data is `data/digits/digits.csv.gz` (64 pixels 0..16 and a label
//! per line), gzip-compressed.

use std::io::Read;

use keras::{Array, backend as K};

/// A seeded generator (SplitMix64) for the initial weights and the shuffles: same seed, same run.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn shuffle(&mut self, items: &mut [usize]) {
        for i in (1..items.len()).rev() {
            items.swap(i, (self.uniform() * (i + 1) as f64) as usize);
        }
    }

    /// A weight variable drawn Glorot-uniform: U(−l, l) with l = √(6 / (fan_in + fan_out)).
    fn glorot(&mut self, shape: &[usize], fan_in: usize, fan_out: usize) -> keras::Result<K::Tensor> {
        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
        let count = shape.iter().product();
        let values: Vec<f32> = (0..count).map(|_| ((self.uniform() * 2.0 - 1.0) * limit) as f32).collect();
        K::variable(Array::from_vec(shape, values)?)
    }
}

/// Pixels (scaled to [0, 1], 64 per image) and labels of the 1,797 digits.
fn load_digits() -> Result<(Vec<f32>, Vec<usize>), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/digits/digits.csv.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path)?).read_to_string(&mut text)?;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let values = line.split(',').map(str::parse::<f32>).collect::<Result<Vec<_>, _>>()?;
        pixels.extend(values[..64].iter().map(|v| v / 16.0));
        labels.push(values[64] as usize);
    }
    Ok((pixels, labels))
}

/// The images at `indices` as a `(n, 64)` array, and their labels one-hot as `(n, 10)`.
fn batch(pixels: &[f32], labels: &[usize], indices: &[usize]) -> keras::Result<[Array; 2]> {
    let x: Vec<f32> = indices.iter().flat_map(|&i| pixels[i * 64..(i + 1) * 64].to_vec()).collect();
    let mut y = vec![0.0f32; indices.len() * 10];
    for (row, &i) in indices.iter().enumerate() {
        y[row * 10 + labels[i]] = 1.0;
    }
    Ok([Array::from_vec(&[indices.len(), 64], x)?, Array::from_vec(&[indices.len(), 10], y)?])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (pixels, labels) = load_digits()?;
    let mut rng = Rng(42);
    let mut order: Vec<usize> = (0..labels.len()).collect();
    rng.shuffle(&mut order);
    let (test, train) = order.split_at(labels.len() / 5);
    println!("{} training images, {} held out for testing", train.len(), test.len());

    // The network: conv 3×3 (16) → relu → max-pool 2×2 → dropout → dense 64 → relu → dense 10.
    let tf = Some(K::ImageDimOrdering::Tf);
    let x = K::placeholder([None, Some(64)]);
    let targets = K::placeholder([None, Some(10)]);
    let kernel = rng.glorot(&[3, 3, 1, 16], 9, 9 * 16)?;
    let w1 = rng.glorot(&[4 * 4 * 16, 64], 4 * 4 * 16, 64)?;
    let w2 = rng.glorot(&[64, 10], 64, 10)?;
    let (b0, b1, b2) = (K::zeros(&[16], None)?, K::zeros(&[64], None)?, K::zeros(&[10], None)?);

    let image = K::reshape(&x, &[-1, 8, 8, 1])?;
    let conv = (K::conv2d(&image, &kernel, (1, 1), K::BorderMode::Same, tf, (1, 1))? + &b0)?;
    let pooled = K::pool2d(&K::relu(&conv, 0.0, None)?, (2, 2), (2, 2), K::BorderMode::Valid, tf, K::PoolMode::Max)?;
    // Dropout only while training: the learning phase picks the branch when the function runs.
    let dropped = K::in_train_phase(&K::dropout(&pooled, 0.25, None, Some(7))?, &pooled)?;
    let hidden = K::relu(&(K::dot(&K::batch_flatten(&dropped)?, &w1)? + &b1)?, 0.0, None)?;
    let probabilities = K::softmax(&(K::dot(&hidden, &w2)? + &b2)?)?;

    let loss = K::mean(&K::categorical_crossentropy(&probabilities, &targets, false)?, K::Axes::All, false)?;
    let hits = K::equal(&K::argmax(&probabilities, -1)?, &K::argmax(&targets, -1)?)?;
    let accuracy = K::mean(&K::cast(&hits, K::floatx())?, K::Axes::All, false)?;

    // SGD with momentum as graph updates: v ← 0.9·v − lr·g, then w ← w + v.
    let params = [kernel, b0, w1, b1, w2, b2];
    let grads = K::gradients(&loss, &params)?;
    let mut updates = Vec::new();
    for (p, g) in params.iter().zip(&grads) {
        let velocity = K::zeros(&p.static_shape().unwrap_or_default(), None)?;
        let new_velocity = ((&velocity * 0.9)? - (g * 0.05))?;
        updates.push((p.clone(), (p + &new_velocity)?));
        updates.push((velocity, new_velocity));
    }
    let inputs = [x, targets, K::learning_phase()];
    let train_step = K::function(&inputs, &[loss.clone(), accuracy.clone()], &updates)?;
    let score = K::function(&inputs[..2], &[loss, accuracy], &[])?;
    let training = Array::from_bools(&[], &[true])?;

    let mut shuffled = train.to_vec();
    for epoch in 1..=15 {
        rng.shuffle(&mut shuffled);
        let mut total_loss = 0.0;
        for indices in shuffled.chunks(32) {
            let [x, y] = batch(&pixels, &labels, indices)?;
            let out = train_step.call(&[x, y, training.clone()])?;
            total_loss += out[0].to_f64_vec()[0] * indices.len() as f64;
        }
        let out = score.call(&batch(&pixels, &labels, test)?)?;
        let (test_loss, test_accuracy) = (out[0].to_f64_vec()[0], out[1].to_f64_vec()[0]);
        let train_loss = total_loss / train.len() as f64;
        println!("epoch {epoch:2}  loss {train_loss:.4}  test loss {test_loss:.4}  test accuracy {test_accuracy:.4}");
    }
    Ok(())
}
