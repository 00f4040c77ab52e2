//! Training and scoring a classifier with the K API alone: the graph ([`Trainer::new`]) is a
//! [`model`] whose mean cross-entropy [`optim`] turns into variable updates; [`data`] feeds it,
//! [`weights`] saves and reloads it, [`plot`] draws its history.

pub mod data;
pub mod model;
pub mod optim;
pub mod plot;
pub mod weights;

use std::path::Path;

use keras::{Array, Error, backend as K};

use data::Dataset;
use model::Model;
use optim::Optimizer;

/// Batch size of scoring: fixed, so a reloaded model is scored by the very same kernel calls.
pub const SCORE_BATCH: usize = 500;

/// A one-line error about a file (data, weights, plot), shown as `path: message`.
pub fn file_error(path: impl AsRef<Path>, message: impl Into<String>) -> Error {
    Error::Config { path: path.as_ref().to_path_buf(), field: None, message: message.into() }
}

/// SplitMix64: a small, seedable generator whose streams are independent of each other, so
/// the split, the weights, the shuffles and the dropout masks each follow from the seed alone.
pub struct Rng(u64);

impl Rng {
    /// The stream choosing the held-out test images.
    pub const SPLIT: u64 = 1;
    /// The stream of initial weights.
    pub const INIT: u64 = 2;
    /// The stream shuffling the training set each epoch.
    pub const SHUFFLE: u64 = 3;
    /// The stream seeding the dropout layers.
    pub const DROPOUT: u64 = 4;

    /// The generator of `stream` under `seed`.
    pub fn new(seed: u64, stream: u64) -> Rng {
        Rng(mix(seed ^ mix(stream)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in [0, 1), 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fisher–Yates shuffle of `items`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            // Multiply-high maps 64 bits onto 0..=i without a modulo bias worth noticing.
            let j = ((self.next_u64() as u128 * (i as u128 + 1)) >> 64) as usize;
            items.swap(i, j);
        }
    }
}

/// SplitMix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mean loss and accuracy over a set of images.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Mean categorical cross-entropy.
    pub loss: f64,
    /// Fraction of images whose most probable class is their label.
    pub accuracy: f64,
}

/// Sums over the batches of a pass, turned into [`Metrics`] at the end.
#[derive(Default)]
struct Totals {
    loss: f64,
    correct: f64,
    seen: usize,
}

impl Totals {
    fn add(&mut self, outputs: &[Array], batch: usize) {
        self.loss += outputs[0].to_f64_vec()[0];
        self.correct += outputs[1].to_f64_vec()[0];
        self.seen += batch;
    }

    fn metrics(&self) -> Metrics {
        let n = self.seen.max(1) as f64;
        Metrics { loss: self.loss / n, accuracy: self.correct / n }
    }
}

/// One epoch of training: the training pass (dropout on, weights moving, as Keras reports it)
/// and the test set scored after it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochStats {
    /// Means over the epoch's batches.
    pub train: Metrics,
    /// The held-out set, scored with the epoch's final weights.
    pub test: Metrics,
    /// Wall time of the training pass, in seconds.
    pub seconds: f64,
}

/// A model compiled for training and scoring: `step` applies the optimiser to one batch with the
/// learning phase fed 1; `score` runs in the test phase. Both return the batch's summed loss
/// and its count of correct predictions.
pub struct Trainer {
    /// The network.
    pub model: Model,
    classes: usize,
    step: K::Function,
    score: K::Function,
    shuffle: Rng,
}

impl Trainer {
    /// Compiles `model` for `classes` classes with `optimizer` at learning rate `lr`; `seed`
    /// fixes the order of the training images in every epoch.
    pub fn new(model: Model, classes: usize, optimizer: Optimizer, lr: f64, seed: u64) -> Result<Trainer, Error> {
        let targets = K::placeholder([None, Some(classes)]);
        let losses = K::categorical_crossentropy(&model.probabilities, &targets, false)?;
        let hits = K::equal(&K::argmax(&model.probabilities, -1)?, &K::argmax(&targets, -1)?)?;
        let sums = [K::sum(&losses, K::Axes::All, false)?, K::sum(&K::cast(&hits, K::floatx())?, K::Axes::All, false)?];
        let mean_loss = K::mean(&losses, K::Axes::All, false)?;
        let updates = optimizer.updates(&mean_loss, &model.variables(), lr)?;
        let inputs = [model.input.clone(), targets.clone(), K::learning_phase()];
        let step = K::function(&inputs, &sums, &updates)?;
        let score = K::function(&inputs[..2], &sums, &[])?;
        Ok(Trainer { model, classes, step, score, shuffle: Rng::new(seed, Rng::SHUFFLE) })
    }

    /// One pass over `train` in a fresh random order, `batch_size` images per update;
    /// `progress(batches_done, running_metrics)` is called after each batch.
    pub fn train_epoch(
        &mut self,
        train: &Dataset,
        batch_size: usize,
        mut progress: impl FnMut(usize, Metrics),
    ) -> Result<Metrics, Error> {
        let mut order: Vec<usize> = (0..train.len()).collect();
        self.shuffle.shuffle(&mut order);
        let training = Array::from_bools(&[], &[true])?;
        let mut totals = Totals::default();
        for (k, indices) in order.chunks(batch_size.max(1)).enumerate() {
            let (x, y) = self.feeds(&train.select(indices))?;
            totals.add(&self.step.call(&[x, y, training.clone()])?, indices.len());
            progress(k + 1, totals.metrics());
        }
        Ok(totals.metrics())
    }

    /// Loss and accuracy of the current weights on `data`, in the test phase (no dropout).
    pub fn evaluate(&self, data: &Dataset) -> Result<Metrics, Error> {
        let mut totals = Totals::default();
        let all: Vec<usize> = (0..data.len()).collect();
        for indices in all.chunks(SCORE_BATCH) {
            let (x, y) = self.feeds(&data.select(indices))?;
            totals.add(&self.score.call(&[x, y])?, indices.len());
        }
        Ok(totals.metrics())
    }

    /// The image and one-hot label arrays of `batch`.
    fn feeds(&self, batch: &Dataset) -> Result<(Array, Array), Error> {
        let mut one_hot = vec![0.0f32; batch.len() * self.classes];
        for (row, &label) in batch.labels.iter().enumerate() {
            one_hot[row * self.classes + label] = 1.0;
        }
        Ok((
            Array::from_vec(&[batch.len(), batch.features()], batch.pixels.clone())?,
            Array::from_vec(&[batch.len(), self.classes], one_hot)?,
        ))
    }
}

/// Number of batches of `batch_size` in `len` images (the last one may be short).
pub fn batch_count(len: usize, batch_size: usize) -> usize {
    len.div_ceil(batch_size.max(1))
}
