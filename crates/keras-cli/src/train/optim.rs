//! Optimisers as graph updates: each returns the `(variable, new value)` pairs a
//! [`K::function`] applies after every step; their state (velocities, moments, the step count)
//! lives in variables, as in Keras 1.

use keras::{Error, Tensor, backend as K};

/// The update rule `keras-cli train --optimizer` picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Optimizer {
    /// Plain gradient descent: `p ← p − lr·g`.
    Sgd,
    /// Keras's SGD with momentum 0.9: `v ← 0.9·v − lr·g`, `p ← p + v`.
    Momentum,
    /// Adam (Kingma & Ba) with Keras 1's defaults β1 = 0.9, β2 = 0.999, ε = 1e-8.
    Adam,
}

const MOMENTUM: f64 = 0.9;
const BETA_1: f64 = 0.9;
const BETA_2: f64 = 0.999;
const ADAM_EPSILON: f64 = 1e-8;

impl Optimizer {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Optimizer::Sgd => "sgd",
            Optimizer::Momentum => "momentum",
            Optimizer::Adam => "adam",
        }
    }

    /// The learning rate used when none is given (Keras 1's defaults, SGD's raised for the
    /// few epochs a command-line run has).
    pub fn default_learning_rate(self) -> f64 {
        match self {
            Optimizer::Sgd => 0.1,
            Optimizer::Momentum => 0.01,
            Optimizer::Adam => 0.001,
        }
    }

    /// The updates that move `params` down the gradient of `loss` with learning rate `lr`.
    pub fn updates(self, loss: &Tensor, params: &[Tensor], lr: f64) -> Result<Vec<(Tensor, Tensor)>, Error> {
        let grads = K::gradients(loss, params)?;
        let mut updates = Vec::new();
        match self {
            Optimizer::Sgd => {
                for (p, g) in params.iter().zip(&grads) {
                    updates.push((p.clone(), (p - (g * lr))?));
                }
            }
            Optimizer::Momentum => {
                for (p, g) in params.iter().zip(&grads) {
                    let v = zeros_like_variable(p)?;
                    let v_new = ((&v * MOMENTUM)? - (g * lr))?;
                    updates.push((p.clone(), (p + &v_new)?));
                    updates.push((v, v_new));
                }
            }
            Optimizer::Adam => {
                let t = K::zeros(&[], None)?;
                let t_new = (&t + 1.0)?;
                // lr·√(1 − β2^t) / (1 − β1^t), with β^t = exp(t·ln β) since t is a tensor.
                let power = |beta: f64| K::exp(&(&t_new * beta.ln())?);
                let lr_t = ((K::sqrt(&(1.0 - power(BETA_2)?)?)? * lr)? / (1.0 - power(BETA_1)?))?;
                for (p, g) in params.iter().zip(&grads) {
                    let (m, v) = (zeros_like_variable(p)?, zeros_like_variable(p)?);
                    let m_new = ((&m * BETA_1)? + (g * (1.0 - BETA_1)))?;
                    let v_new = ((&v * BETA_2)? + (K::square(g)? * (1.0 - BETA_2)))?;
                    let step = ((&lr_t * &m_new)? / (K::sqrt(&v_new)? + ADAM_EPSILON))?;
                    updates.push((p.clone(), (p - step)?));
                    updates.push((m, m_new));
                    updates.push((v, v_new));
                }
                updates.push((t, t_new));
            }
        }
        Ok(updates)
    }
}

/// A new variable of zeros with `p`'s shape and dtype (an optimiser's per-weight state).
fn zeros_like_variable(p: &Tensor) -> Result<Tensor, Error> {
    let shape = p.static_shape().unwrap_or_default();
    K::zeros(&shape, Some(p.dtype()))
}

#[cfg(test)]
mod tests {
    use keras::Array;

    use super::*;

    /// Two steps of `optimizer` on `loss = Σ c·w` (gradient `c`, whatever `w`), from `w = 0`.
    fn two_steps(optimizer: Optimizer, lr: f64) -> Vec<f64> {
        let w = K::variable(Array::from([0.0f32, 0.0])).unwrap();
        let c = K::constant(Array::from([2.0f32, -0.5]));
        let loss = K::sum(&(&w * &c).unwrap(), K::Axes::All, false).unwrap();
        let updates = optimizer.updates(&loss, std::slice::from_ref(&w), lr).unwrap();
        let step = K::function(&[], &[], &updates).unwrap();
        step.call(&[]).unwrap();
        step.call(&[]).unwrap();
        K::get_value(&w).unwrap().to_f64_vec()
    }

    fn assert_close(got: &[f64], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6 * w.abs().max(1.0), "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn sgd_steps_against_the_gradient() {
        assert_close(&two_steps(Optimizer::Sgd, 0.1), &[-0.4, 0.1]);
    }

    #[test]
    fn momentum_accumulates_a_velocity() {
        // v1 = −lr·c, w1 = v1; v2 = 0.9·v1 − lr·c, w2 = w1 + v2 = −2.9·lr·c.
        assert_close(&two_steps(Optimizer::Momentum, 0.01), &[-2.9 * 0.01 * 2.0, 2.9 * 0.01 * 0.5]);
    }

    #[test]
    fn adam_follows_kingma_and_ba() {
        // With a constant gradient g, m_t = (1 − β1^t)·g and v_t = (1 − β2^t)·g², so each step is
        // lr·√(1 − β2^t)/(1 − β1^t) · m_t/(√v_t + ε), close to lr·sign(g).
        let lr = 0.001;
        let mut want = [0.0f64; 2];
        for t in 1..=2 {
            let lr_t = lr * (1.0 - BETA_2.powi(t)).sqrt() / (1.0 - BETA_1.powi(t));
            for (w, g) in want.iter_mut().zip([2.0f64, -0.5]) {
                let (m, v) = ((1.0 - BETA_1.powi(t)) * g, (1.0 - BETA_2.powi(t)) * g * g);
                *w -= lr_t * m / (v.sqrt() + ADAM_EPSILON);
            }
        }
        assert_close(&two_steps(Optimizer::Adam, lr), &want);
    }
}
