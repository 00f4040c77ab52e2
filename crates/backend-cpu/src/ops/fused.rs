//! Fused fast paths: softmax / log-softmax and batch normalisation, on `F32` and `F64`.
//!
//! Both are optional in the contract; `F16` answers `Unsupported` so that the host decomposes
//! them into primitive ops.

use keras_backend_api::{BackendError, DType, shape};
use rayon::prelude::*;

use super::element::{Float, for_each_row, view, view_mut, worth_splitting};
use super::{Tensor, TensorMut};
use crate::{CpuStorage, Result, layout::broadcast_strides, storage::unsupported_dtype};

/// Columns per task when softmax runs along a non-last axis.
const COLUMNS: usize = 1024;

/// Softmax (or log-softmax when `log`) of `x` along `axis` into `out` (same shape and dtype).
/// Stable: each slice is shifted by its maximum before `exp`, and log-softmax is
/// `x - max - ln Σ exp(x - max)`.
pub fn softmax(x: Tensor<'_>, axis: usize, log: bool, out: TensorMut<'_>) -> Result<()> {
    let kernel = if log { "softmax(log)" } else { "softmax" };
    let Some(&n) = x.shape.get(axis) else {
        return Err(BackendError::invalid(format!(
            "{kernel}: axis {axis} is out of range for `x` of shape {:?}",
            x.shape
        )));
    };
    if x.shape != out.shape {
        return Err(BackendError::invalid(format!(
            "{kernel}: out has shape {:?} but `x` has shape {:?}; they must be equal",
            out.shape, x.shape
        )));
    }
    let inner: usize = x.shape[axis + 1..].iter().product();
    match x.data {
        CpuStorage::F32(xs) => softmax_typed(xs, n, inner, log, view_mut(out.data, kernel, "out")?),
        CpuStorage::F64(xs) => softmax_typed(xs, n, inner, log, view_mut(out.data, kernel, "out")?),
        CpuStorage::F16(_) => return Err(unsupported_dtype(kernel, DType::F16)),
        other => {
            return Err(BackendError::invalid(format!("{kernel}: takes float tensors, got {}", other.dtype())));
        }
    }
    Ok(())
}

fn softmax_typed<T: Float>(x: &[T], n: usize, inner: usize, log: bool, out: &mut [T]) {
    if out.is_empty() {
        return;
    }
    let parallel = worth_splitting(x.len());
    if inner == 1 {
        let body = |(o, row): (&mut [T], &[T])| softmax_row(row, log, o);
        if parallel {
            out.par_chunks_mut(n).zip(x.par_chunks(n)).for_each(body);
        } else {
            out.chunks_mut(n).zip(x.chunks(n)).for_each(body);
        }
        return;
    }
    // Along a non-last axis, each [n, inner] block is processed in column strips so that the
    // running max and sum are vectors walked row by row (contiguous reads).
    let block = |(o, xb): (&mut [T], &[T])| {
        for start in (0..inner).step_by(COLUMNS) {
            let end = inner.min(start + COLUMNS);
            softmax_columns(xb, inner, start..end, log, o);
        }
    };
    if parallel {
        out.par_chunks_mut(n * inner).zip(x.par_chunks(n * inner)).for_each(block);
    } else {
        out.chunks_mut(n * inner).zip(x.chunks(n * inner)).for_each(block);
    }
}

fn softmax_row<T: Float>(x: &[T], log: bool, out: &mut [T]) {
    let max = x.iter().fold(T::LOWEST, |m, &v| m.maximum(v));
    let mut sum = 0f64;
    for (o, &v) in out.iter_mut().zip(x) {
        let e = (v - max).exp();
        sum += e.to_f64();
        *o = e;
    }
    if log {
        let log_sum = T::from_f64(sum.ln());
        out.iter_mut().zip(x).for_each(|(o, &v)| *o = v - max - log_sum);
    } else {
        let sum = T::from_f64(sum);
        out.iter_mut().for_each(|o| *o = *o / sum);
    }
}

/// Softmax over the rows of the `[n, inner]` block `x`, for the columns `cols`.
fn softmax_columns<T: Float>(x: &[T], inner: usize, cols: std::ops::Range<usize>, log: bool, out: &mut [T]) {
    let n = x.len() / inner;
    let rows = |i: usize| i * inner + cols.start..i * inner + cols.end;
    let mut max = vec![T::LOWEST; cols.len()];
    for i in 0..n {
        max.iter_mut().zip(&x[rows(i)]).for_each(|(m, &v)| *m = m.maximum(v));
    }
    let mut sum = vec![0f64; cols.len()];
    for i in 0..n {
        for ((o, &v), (s, &m)) in out[rows(i)].iter_mut().zip(&x[rows(i)]).zip(sum.iter_mut().zip(&max)) {
            let e = (v - m).exp();
            *s += e.to_f64();
            *o = e;
        }
    }
    if log {
        let log_sum: Vec<T> = sum.iter().map(|s| T::from_f64(s.ln())).collect();
        for i in 0..n {
            for ((o, &v), (&m, &l)) in out[rows(i)].iter_mut().zip(&x[rows(i)]).zip(max.iter().zip(&log_sum)) {
                *o = v - m - l;
            }
        }
    } else {
        let sum: Vec<T> = sum.iter().map(|&s| T::from_f64(s)).collect();
        for i in 0..n {
            out[rows(i)].iter_mut().zip(&sum).for_each(|(o, &s)| *o = *o / s);
        }
    }
}

/// `out = (x - mean) / √(var + epsilon) · gamma + beta`, each parameter broadcast to `x`'s
/// shape (which is `out`'s). All five tensors share one float dtype.
pub fn batch_norm(
    x: Tensor<'_>,
    mean: Tensor<'_>,
    var: Tensor<'_>,
    beta: Tensor<'_>,
    gamma: Tensor<'_>,
    epsilon: f64,
    out: TensorMut<'_>,
) -> Result<()> {
    const KERNEL: &str = "batch_norm";
    if x.shape != out.shape {
        return Err(BackendError::invalid(format!(
            "{KERNEL}: out has shape {:?} but `x` has shape {:?}; they must be equal",
            out.shape, x.shape
        )));
    }
    let params = [("mean", mean), ("var", var), ("beta", beta), ("gamma", gamma)];
    for (name, p) in &params {
        if !shape::broadcast(p.shape, x.shape).is_ok_and(|s| s == x.shape) {
            return Err(BackendError::invalid(format!(
                "{KERNEL}: `{name}` has shape {:?}, which does not broadcast to `x`'s shape {:?}",
                p.shape, x.shape
            )));
        }
    }
    match x.data.dtype() {
        DType::F32 => batch_norm_typed::<f32>(x, &params, epsilon, out),
        DType::F64 => batch_norm_typed::<f64>(x, &params, epsilon, out),
        DType::F16 => Err(unsupported_dtype(KERNEL, DType::F16)),
        other => Err(BackendError::invalid(format!("{KERNEL}: takes float tensors, got {other}"))),
    }
}

fn batch_norm_typed<T: Float>(
    x: Tensor<'_>,
    params: &[(&str, Tensor<'_>); 4],
    epsilon: f64,
    out: TensorMut<'_>,
) -> Result<()> {
    const KERNEL: &str = "batch_norm";
    let xs = view::<T>(x.data, KERNEL, "x")?;
    let [mean, var, beta, gamma] = [0, 1, 2, 3].map(|k| view::<T>(params[k].1.data, KERNEL, params[k].0));
    let (mean, var, beta, gamma) = (mean?, var?, beta?, gamma?);
    let o = view_mut::<T>(out.data, KERNEL, "out")?;
    let eps = T::from_f64(epsilon);
    let shape = x.shape;
    let strides = [
        broadcast_strides(shape, shape),
        broadcast_strides(params[0].1.shape, shape),
        broadcast_strides(params[1].1.shape, shape),
        broadcast_strides(params[2].1.shape, shape),
        broadcast_strides(params[3].1.shape, shape),
    ];
    for_each_row(shape, strides, o, |row, [ox, om, ov, ob, og], [sx, sm, sv, sb, sg]| {
        for (j, r) in row.iter_mut().enumerate() {
            let scale = gamma[og + j * sg] / (var[ov + j * sv] + eps).sqrt();
            *r = (xs[ox + j * sx] - mean[om + j * sm]) * scale + beta[ob + j * sb];
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keras_backend_api::ErrorKind;

    fn run_softmax(x: &[f64], shape: &[usize], axis: usize, log: bool) -> Vec<f64> {
        let data = CpuStorage::F64(x.to_vec());
        let mut o = CpuStorage::zeros(DType::F64, x.len());
        softmax(Tensor { data: &data, shape }, axis, log, TensorMut { data: &mut o, shape }).unwrap();
        let CpuStorage::F64(v) = o else { unreachable!() };
        v
    }

    /// Naive softmax of each slice along `axis`: exp(x) / Σ exp(x), no shift (inputs are small).
    fn naive(x: &[f64], shape: &[usize], axis: usize, log: bool) -> Vec<f64> {
        let outer: usize = shape[..axis].iter().product();
        let n = shape[axis];
        let inner: usize = shape[axis + 1..].iter().product();
        let mut out = vec![0.0; x.len()];
        for o in 0..outer {
            for j in 0..inner {
                let idx = |i: usize| o * n * inner + i * inner + j;
                let sum: f64 = (0..n).map(|i| x[idx(i)].exp()).sum();
                for i in 0..n {
                    out[idx(i)] = if log { x[idx(i)] - sum.ln() } else { x[idx(i)].exp() / sum };
                }
            }
        }
        out
    }

    #[test]
    fn softmax_matches_naive_on_every_axis() {
        let shape = [3, 4, 5];
        let x: Vec<f64> = (0..60).map(|i| ((i * 37) % 17) as f64 / 5.0 - 1.5).collect();
        for axis in 0..3 {
            for log in [false, true] {
                let got = run_softmax(&x, &shape, axis, log);
                for (g, w) in got.iter().zip(naive(&x, &shape, axis, log)) {
                    assert!((g - w).abs() < 1e-12, "axis {axis} log {log}: {g} vs {w}");
                }
            }
        }
        let rows = run_softmax(&x, &[12, 5], 1, false);
        for r in rows.chunks(5) {
            assert!((r.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn softmax_is_stable_for_large_inputs() {
        let got = run_softmax(&[1000.0, 1000.0, -1000.0], &[3], 0, false);
        assert_eq!(got, vec![0.5, 0.5, 0.0]);
        let got = run_softmax(&[1000.0, 1000.0], &[2], 0, true);
        assert!((got[0] + std::f64::consts::LN_2).abs() < 1e-12);
        let x = CpuStorage::F32(vec![100.0, 0.0]);
        let mut o = CpuStorage::zeros(DType::F32, 2);
        softmax(Tensor { data: &x, shape: &[2] }, 0, false, TensorMut { data: &mut o, shape: &[2] }).unwrap();
        let CpuStorage::F32(v) = o else { unreachable!() };
        assert_eq!(v[0], 1.0);
        assert!(v[1] > 0.0 && v[1] < 1e-40);
    }

    #[test]
    fn large_softmax_in_parallel() {
        let shape = [64, 300, 3];
        let x: Vec<f64> = (0..57_600).map(|i| ((i * 7919) % 101) as f64 / 20.0).collect();
        for axis in [1, 2] {
            let got = run_softmax(&x, &shape, axis, false);
            for (g, w) in got.iter().zip(naive(&x, &shape, axis, false)) {
                assert!((g - w).abs() < 1e-12);
            }
        }
        // Column strips wider than one strip.
        let wide: Vec<f64> = (0..2 * 3000).map(|i| (i % 7) as f64).collect();
        let got = run_softmax(&wide, &[2, 3000], 0, true);
        for (g, w) in got.iter().zip(naive(&wide, &[2, 3000], 0, true)) {
            assert!((g - w).abs() < 1e-12);
        }
    }

    #[test]
    fn softmax_errors_and_empty() {
        let x = CpuStorage::F32(vec![0.0; 6]);
        let mut o = CpuStorage::zeros(DType::F32, 6);
        let e = softmax(Tensor { data: &x, shape: &[2, 3] }, 2, false, TensorMut { data: &mut o, shape: &[2, 3] })
            .unwrap_err();
        assert!(e.message.contains("axis 2") && e.message.contains("[2, 3]"), "{}", e.message);
        let xi = CpuStorage::I32(vec![0; 6]);
        let mut oi = CpuStorage::zeros(DType::I32, 6);
        let e =
            softmax(Tensor { data: &xi, shape: &[6] }, 0, true, TensorMut { data: &mut oi, shape: &[6] }).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.contains("int32"), "{}", e.message);
        let e =
            softmax(Tensor { data: &x, shape: &[6] }, 0, true, TensorMut { data: &mut oi, shape: &[6] }).unwrap_err();
        assert!(e.message.contains("int32"), "{}", e.message);
        let empty = CpuStorage::F64(vec![]);
        let mut eo = CpuStorage::zeros(DType::F64, 0);
        softmax(Tensor { data: &empty, shape: &[3, 0] }, 1, false, TensorMut { data: &mut eo, shape: &[3, 0] })
            .unwrap();
        softmax(Tensor { data: &empty, shape: &[0, 3] }, 1, false, TensorMut { data: &mut eo, shape: &[0, 3] })
            .unwrap();
    }

    #[test]
    fn batch_norm_matches_the_formula() {
        let x: Vec<f64> = (0..24).map(|i| i as f64 * 0.5 - 3.0).collect();
        let mean = [0.5, -1.0, 2.0];
        let var = [1.0, 4.0, 0.25];
        let beta = [0.1];
        let gamma = [2.0, 1.0, -1.0];
        let st = |v: &[f64]| CpuStorage::F64(v.to_vec());
        let (xs, ms, vs, bs, gs) = (st(&x), st(&mean), st(&var), st(&beta), st(&gamma));
        let mut o = CpuStorage::zeros(DType::F64, 24);
        let shape = [2, 4, 3];
        batch_norm(
            Tensor { data: &xs, shape: &shape },
            Tensor { data: &ms, shape: &[3] },
            Tensor { data: &vs, shape: &[1, 1, 3] },
            Tensor { data: &bs, shape: &[] },
            Tensor { data: &gs, shape: &[3] },
            1e-3,
            TensorMut { data: &mut o, shape: &shape },
        )
        .unwrap();
        let CpuStorage::F64(got) = o else { unreachable!() };
        for (i, g) in got.iter().enumerate() {
            let c = i % 3;
            let want = (x[i] - mean[c]) / (var[c] + 1e-3).sqrt() * gamma[c] + beta[0];
            assert!((g - want).abs() < 1e-12, "{i}: {g} vs {want}");
        }
    }

    #[test]
    fn batch_norm_channels_first_and_errors() {
        let x = CpuStorage::F32((0..8).map(|i| i as f32).collect());
        let p = CpuStorage::F32(vec![1.0, 2.0]);
        let zero = CpuStorage::F32(vec![0.0]);
        let one = CpuStorage::F32(vec![1.0]);
        let mut o = CpuStorage::zeros(DType::F32, 8);
        batch_norm(
            Tensor { data: &x, shape: &[2, 2, 2] },
            Tensor { data: &p, shape: &[2, 1] },
            Tensor { data: &one, shape: &[1] },
            Tensor { data: &zero, shape: &[1] },
            Tensor { data: &one, shape: &[1] },
            0.0,
            TensorMut { data: &mut o, shape: &[2, 2, 2] },
        )
        .unwrap();
        assert_eq!(o, CpuStorage::F32(vec![-1.0, 0.0, 0.0, 1.0, 3.0, 4.0, 4.0, 5.0]));
        let e = batch_norm(
            Tensor { data: &x, shape: &[2, 2, 2] },
            Tensor { data: &p, shape: &[2] },
            Tensor { data: &one, shape: &[1] },
            Tensor { data: &zero, shape: &[1] },
            Tensor { data: &CpuStorage::F32(vec![1.0; 3]), shape: &[3] },
            0.0,
            TensorMut { data: &mut o, shape: &[2, 2, 2] },
        )
        .unwrap_err();
        assert!(e.message.contains("gamma") && e.message.contains("[3]") && e.message.contains("[2, 2, 2]"));
        let pd = CpuStorage::F64(vec![1.0, 2.0]);
        let e = batch_norm(
            Tensor { data: &x, shape: &[2, 2, 2] },
            Tensor { data: &pd, shape: &[2] },
            Tensor { data: &one, shape: &[1] },
            Tensor { data: &zero, shape: &[1] },
            Tensor { data: &one, shape: &[1] },
            0.0,
            TensorMut { data: &mut o, shape: &[2, 2, 2] },
        )
        .unwrap_err();
        assert!(e.message.contains("mean") && e.message.contains("float64"), "{}", e.message);
    }
}
