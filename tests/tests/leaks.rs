//! Resource leaks: 10,000 training steps of a small network (forward pass, gradients, SGD
//! updates of four variables) leave the backend's live-buffer count exactly where it was after
//! the first 100, and the process's resident memory within a small bound of it.
//!
//! The live-buffer count is the contract's own counter (`Backend::live_buffers`), read on a
//! private instance of each backend, so other tests cannot move it. The resident set size is
//! `VmRSS` of `/proc/self/status`; this file holds a single test so that nothing else runs in
//! the process meanwhile.

use keras::{
    Array, Backend,
    backend::{self as K, Function, Tensor},
    registry,
};

const STEPS: usize = 10_000;
const WARM_UP: usize = 100;
/// Growth of the resident set allowed over the 9,900 steps after the warm-up: allocator
/// noise, far below one leaked buffer per step (a step's smallest buffer is 1 KiB, its
/// activations 8 KiB).
const RSS_SLACK_KIB: u64 = 4 * 1024;

/// The resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux reports /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS in kB")
}

/// One SGD step of a two-layer network on `backend`: returns the loss, updates the weights.
fn training_step(backend: &Backend) -> keras::Result<(Function, Vec<Tensor>)> {
    K::with_backend(backend, || {
        let x = K::placeholder([None, Some(64)]);
        let target = K::placeholder([None, Some(10)]);
        let init = |rows: usize, cols: usize, phase: f32| {
            let values = (0..rows * cols).map(|i| 0.1 * (i as f32 * 0.61 + phase).sin()).collect();
            K::variable(Array::from_vec(&[rows, cols], values)?)
        };
        let (w1, b1) = (init(64, 32, 0.0)?, K::zeros(&[32], None)?);
        let (w2, b2) = (init(32, 10, 1.0)?, K::zeros(&[10], None)?);
        let hidden = K::relu(&(K::dot(&x, &w1)? + &b1)?, 0.0, None)?;
        let p = K::softmax(&(K::dot(&hidden, &w2)? + &b2)?)?;
        let loss = K::mean(&K::categorical_crossentropy(&p, &target, false)?, K::Axes::All, false)?;
        let weights = vec![w1, b1, w2, b2];
        let grads = K::gradients(&loss, &weights)?;
        let updates = weights
            .iter()
            .zip(&grads)
            .map(|(w, g)| Ok((w.clone(), (w - (g * 0.01)?)?)))
            .collect::<keras::Result<Vec<_>>>()?;
        Ok((K::function(&[x, target], &[loss], &updates)?, weights))
    })
}

#[test]
fn ten_thousand_training_steps_leak_neither_buffers_nor_memory() {
    let mut backends = vec![registry::load_in("cpu", &[]).unwrap()];
    let blas = keras_tests::target_dir().join(registry::library_file_name("blas"));
    if blas.is_file() {
        backends.push(registry::load(blas.to_str().unwrap()).unwrap());
    }
    let x = Array::from_vec(&[32, 64], (0..32 * 64).map(|i| ((i % 7) as f32 - 3.0) * 0.3).collect()).unwrap();
    let target = Array::from_vec(&[32, 10], (0..320).map(|i| f32::from(i % 10 == (i / 10) % 10)).collect()).unwrap();
    let feeds = [x, target];

    for backend in backends {
        let empty = backend.live_buffers();
        let (step, weights) = training_step(&backend).unwrap();
        let mut losses = Vec::with_capacity(STEPS);
        for _ in 0..WARM_UP {
            losses.push(step.call(&feeds).unwrap()[0].to_vec::<f32>().unwrap()[0]);
        }
        let (buffers, rss) = (backend.live_buffers(), rss_kib());
        for _ in WARM_UP..STEPS {
            losses.push(step.call(&feeds).unwrap()[0].to_vec::<f32>().unwrap()[0]);
        }
        let name = backend.name().to_string();
        assert_eq!(backend.live_buffers(), buffers, "{name}: live buffers after {WARM_UP} steps and after {STEPS}");
        let grown = rss_kib().saturating_sub(rss);
        assert!(grown <= RSS_SLACK_KIB, "{name}: the resident set grew by {grown} KiB over {} steps", STEPS - WARM_UP);
        // The steps did train: the loss went down.
        assert!(losses[STEPS - 1] < 0.8 * losses[0], "{name}: loss {} -> {}", losses[0], losses[STEPS - 1]);

        // Dropping the function and the variables frees everything they held.
        drop((step, weights));
        assert_eq!(backend.live_buffers(), empty, "{name}: buffers left after everything was dropped");
    }
}
