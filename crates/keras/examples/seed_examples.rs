//! The examples of the Keras backend documentation, in Rust.
//!
//! ```text
//! cargo run -p keras --example seed_examples
//! ```
//!
//! Python (the documentation page)           Rust (this program)
//! input = K.placeholder(shape=(2, 4, 5))     K::placeholder([2, 4, 5])
//! input = K.placeholder(shape=(None, 4, 5))  K::placeholder([None, Some(4), Some(5)])
//! input = K.placeholder(ndim=3)              K::placeholder_ndim(3)
//! var = K.variable(value=val)                K::variable(val)?
//! a = b + c * K.abs(d)                       (&b + &c * K::abs(&d))?
//! c = K.dot(a, K.transpose(b))               K::dot(&a, &K::transpose(&b)?)?
//! a = K.sum(b, axis=2)                       K::sum(&b, 2, false)?
//! a = K.softmax(b)                           K::softmax(&b)?
//! a = K.concatenate([b, c], axis=-1)         K::concatenate(&[b, c], -1)?

use keras::{Array, backend as K};

/// Deterministic values in [0, 1) standing in for `np.random.random(shape)`.
fn random(shape: &[usize], seed: u64) -> Array {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let count = shape.iter().product();
    let values: Vec<f32> = (0..count)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    Array::from_vec(shape, values).expect("count matches shape")
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> keras::Result<()> {
    println!("backend: {} (floatx {}, epsilon {})", K::backend()?, K::floatx(), K::epsilon());

    // Placeholders: fixed, partly unknown, and rank-only shapes.
    let fixed = K::placeholder([2, 4, 5]);
    let batch = K::placeholder([None, Some(4), Some(5)]);
    let any = K::placeholder_ndim(3);
    for (name, p) in [("shape=(2, 4, 5)", &fixed), ("shape=(None, 4, 5)", &batch), ("ndim=3", &any)] {
        println!("placeholder({name}): int_shape {:?}, dtype {}", K::int_shape(p), K::dtype(p));
    }

    // Variables: from values, all zeros, all ones.
    let var = K::variable(random(&[3, 4, 5], 1))?;
    let zeros = K::zeros(&[3, 4, 5], None)?;
    let ones = K::ones(&[3, 4, 5], None)?;
    println!(
        "variable: {} parameters; zeros sum {}; ones sum {}",
        K::count_params(&var)?,
        K::eval(&K::sum(&zeros, K::Axes::All, false)?)?,
        K::eval(&K::sum(&ones, K::Axes::All, false)?)?
    );

    // Tensor operations, on inputs fed when the function is called.
    let b = batch.clone();
    let c = K::placeholder([None, Some(4), Some(5)]);
    let d = K::placeholder([None, Some(4), Some(5)]);
    let a = (&b + &c * K::abs(&d))?;
    // The page's `K.dot(a, K.transpose(b))` is meant for matrices: with 3-D `b` NumPy's rule would
    // contract a's 5 columns with transpose(b)'s 4 rows and fail. So: the rows of a and b.
    let (rows_a, rows_b) = (K::reshape(&a, &[-1, 5])?, K::reshape(&b, &[-1, 5])?);
    let products = K::dot(&rows_a, &K::transpose(&rows_b)?)?;
    let sums = K::sum(&b, 2, false)?;
    let probabilities = K::softmax(&b)?;
    let joined = K::concatenate(&[b.clone(), c.clone()], -1)?;

    let f = K::function(&[b, c, d], &[a, products, sums, probabilities, joined], &[])?;
    let feeds =
        [random(&[2, 4, 5], 2), random(&[2, 4, 5], 3), (Array::from_f64s(K::DType::F32, &[2, 4, 5], &[-1.0; 40])?)];
    let names = [
        "b + c * K.abs(d)",
        "K.dot(a, K.transpose(b)) (rows)",
        "K.sum(b, axis=2)",
        "K.softmax(b)",
        "K.concatenate([b, c], axis=-1)",
    ];
    for (name, value) in names.iter().zip(f.call(&feeds)?) {
        println!("{name}: shape {:?}", value.shape());
        println!("  {value:?}");
    }
    Ok(())
}
