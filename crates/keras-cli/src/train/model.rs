//! The two networks `keras-cli train` offers, built from K functions only: weights are K
//! variables initialised Glorot-uniform from a seeded host generator, dropout is active only when
//! the learning phase is fed 1.

use keras::{Array, Error, Tensor, backend as K};

use super::Rng;

/// The network `keras-cli train --model` builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelKind {
    /// Two hidden layers of 128 ReLU units, dropout 0.2 after each, softmax output.
    Mlp,
    /// Two 3×3 convolutions (32 then 64 filters, `same`, ReLU), 2×2 max pooling, dropout 0.25,
    /// a dense layer of 128 ReLU units, dropout 0.5, softmax output (Keras's `mnist_cnn` example,
    /// with `same` padding since the digits are only 8×8).
    Cnn,
}

impl ModelKind {
    /// The name on the command line and in saved weights.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Cnn => "cnn",
        }
    }

    /// The kind named `name` (`mlp`, `cnn`).
    pub fn from_name(name: &str) -> Option<ModelKind> {
        [ModelKind::Mlp, ModelKind::Cnn].into_iter().find(|k| k.name() == name)
    }
}

/// A built network: the image placeholder, its class probabilities, and its weights by name.
pub struct Model {
    /// Flattened images, `(batch, rows·cols)`.
    pub input: Tensor,
    /// Class probabilities, `(batch, classes)`.
    pub probabilities: Tensor,
    /// Every weight variable with its name (`dense_1/kernel`, ...), in creation order.
    pub weights: Vec<(String, Tensor)>,
}

impl Model {
    /// Builds `kind` for `rows × cols` images and `classes` classes; `seed` fixes the initial
    /// weights and the dropout masks.
    pub fn build(kind: ModelKind, rows: usize, cols: usize, classes: usize, seed: u64) -> Result<Model, Error> {
        let mut layers = Layers {
            rng: Rng::new(seed, Rng::INIT),
            dropout_seed: Rng::new(seed, Rng::DROPOUT).next_u64(),
            weights: Vec::new(),
        };
        let input = K::placeholder([None, Some(rows * cols)]);
        let logits = match kind {
            ModelKind::Mlp => {
                let h = layers.dense("dense_1", &input, 128)?;
                let h = layers.dropout(&K::relu(&h, 0.0, None)?, 0.2)?;
                let h = layers.dense("dense_2", &h, 128)?;
                let h = layers.dropout(&K::relu(&h, 0.0, None)?, 0.2)?;
                layers.dense("dense_3", &h, classes)?
            }
            ModelKind::Cnn => {
                let image = K::reshape(&input, &[-1, rows as isize, cols as isize, 1])?;
                let h = K::relu(&layers.conv("conv_1", &image, 32)?, 0.0, None)?;
                let h = K::relu(&layers.conv("conv_2", &h, 64)?, 0.0, None)?;
                let h = K::pool2d(&h, (2, 2), (2, 2), K::BorderMode::Valid, Some(TF), K::PoolMode::Max)?;
                let h = K::batch_flatten(&layers.dropout(&h, 0.25)?)?;
                let h = K::relu(&layers.dense("dense_1", &h, 128)?, 0.0, None)?;
                let h = layers.dropout(&h, 0.5)?;
                layers.dense("dense_2", &h, classes)?
            }
        };
        Ok(Model { input, probabilities: K::softmax(&logits)?, weights: layers.weights })
    }

    /// The weight variables, in creation order.
    pub fn variables(&self) -> Vec<Tensor> {
        self.weights.iter().map(|(_, v)| v.clone()).collect()
    }
}

/// Channels last: images `(batch, rows, cols, channels)`, kernels `(r, c, in, out)`.
const TF: K::ImageDimOrdering = K::ImageDimOrdering::Tf;

/// Creates layers' weights in a fixed order, so one seed always gives the same network.
struct Layers {
    rng: Rng,
    dropout_seed: u64,
    weights: Vec<(String, Tensor)>,
}

impl Layers {
    /// A variable of `shape` drawn from U(−l, l), `l = √(6 / (fan_in + fan_out))` (Keras 1's
    /// `glorot_uniform`).
    fn glorot(&mut self, name: String, shape: &[usize], fan_in: usize, fan_out: usize) -> Result<Tensor, Error> {
        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
        let values: Vec<f32> =
            (0..shape.iter().product()).map(|_| ((self.rng.uniform() * 2.0 - 1.0) * limit) as f32).collect();
        self.add(name, Array::from_vec(shape, values)?)
    }

    fn add(&mut self, name: String, value: Array) -> Result<Tensor, Error> {
        let variable = K::variable_with(value, None, Some(&name))?;
        self.weights.push((name, variable.clone()));
        Ok(variable)
    }

    /// `x·W + b` for `x` `(batch, n)`: `W` Glorot-uniform, `b` zeros.
    fn dense(&mut self, name: &str, x: &Tensor, units: usize) -> Result<Tensor, Error> {
        let inputs = x.shape().last().copied().flatten().unwrap_or(0);
        let kernel = self.glorot(format!("{name}/kernel"), &[inputs, units], inputs, units)?;
        let bias = self.add(format!("{name}/bias"), Array::from(vec![0.0f32; units]))?;
        K::dot(x, &kernel)? + &bias
    }

    /// A 3×3 `same` convolution of `x` `(batch, rows, cols, in)` to `filters` channels, plus a
    /// bias. Keras 1 counts a kernel's fans as channels × receptive field.
    fn conv(&mut self, name: &str, x: &Tensor, filters: usize) -> Result<Tensor, Error> {
        let channels = x.shape().last().copied().flatten().unwrap_or(0);
        let shape = [3, 3, channels, filters];
        let kernel = self.glorot(format!("{name}/kernel"), &shape, 9 * channels, 9 * filters)?;
        let bias = self.add(format!("{name}/bias"), Array::from(vec![0.0f32; filters]))?;
        K::conv2d(x, &kernel, (1, 1), K::BorderMode::Same, Some(TF), (1, 1))? + &bias
    }

    /// Dropout of `level` in the training phase, identity in the test phase; each layer draws
    /// from its own seed of the model's stream.
    fn dropout(&mut self, x: &Tensor, level: f64) -> Result<Tensor, Error> {
        self.dropout_seed = self.dropout_seed.wrapping_add(1);
        K::in_train_phase(&K::dropout(x, level, None, Some(self.dropout_seed))?, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(model: &Model) -> Vec<(String, Vec<f64>)> {
        model.weights.iter().map(|(n, v)| (n.clone(), K::get_value(v).unwrap().to_f64_vec())).collect()
    }

    #[test]
    fn weights_are_glorot_uniform_and_fixed_by_the_seed() {
        let model = Model::build(ModelKind::Cnn, 8, 8, 10, 5).unwrap();
        let shapes: Vec<Vec<usize>> = model.weights.iter().map(|(_, v)| v.static_shape().unwrap()).collect();
        assert_eq!(
            shapes,
            [
                vec![3, 3, 1, 32],
                vec![32],
                vec![3, 3, 32, 64],
                vec![64],
                vec![1024, 128],
                vec![128],
                vec![128, 10],
                vec![10]
            ]
        );
        let limits = [
            (6.0f64 / (9.0 + 288.0)).sqrt(),
            (6.0f64 / (288.0 + 576.0)).sqrt(),
            (6.0f64 / 1152.0).sqrt(),
            (6.0f64 / 138.0).sqrt(),
        ];
        let weights = values(&model);
        for (k, limit) in limits.iter().enumerate() {
            let (kernel, bias) = (&weights[2 * k].1, &weights[2 * k + 1].1);
            assert!(kernel.iter().all(|v| v.abs() <= *limit), "{} exceeds {limit}", weights[2 * k].0);
            // A uniform draw fills its range: the largest of hundreds of draws is near the limit.
            assert!(kernel.iter().fold(0.0f64, |m, v| m.max(v.abs())) > 0.9 * limit);
            assert!(bias.iter().all(|&v| v == 0.0));
        }
        assert_eq!(weights, values(&Model::build(ModelKind::Cnn, 8, 8, 10, 5).unwrap()));
        assert_ne!(weights, values(&Model::build(ModelKind::Cnn, 8, 8, 10, 6).unwrap()));
    }

    #[test]
    fn dropout_acts_only_in_the_training_phase() {
        let model = Model::build(ModelKind::Mlp, 2, 3, 4, 1).unwrap();
        let inputs = [model.input.clone(), K::learning_phase()];
        let f = K::function(&inputs, std::slice::from_ref(&model.probabilities), &[]).unwrap();
        let x = Array::from([[0.5f32, 1.0, 0.0, 0.25, 0.75, 1.0]]);
        let run =
            |phase: bool| f.call(&[x.clone(), Array::from_bools(&[], &[phase]).unwrap()]).unwrap()[0].to_f64_vec();
        let test = run(false);
        assert!((test.iter().sum::<f64>() - 1.0).abs() < 1e-6, "probabilities sum to 1: {test:?}");
        assert_eq!(test, run(false), "the test phase is deterministic");
        // Each call draws new masks of 256 hidden units: two training passes differ.
        assert_ne!(run(true), run(true));
    }
}
