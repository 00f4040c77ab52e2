//! Convolution, pooling and resizing in the K API: values by hand and against direct loops over
//! the definitions (README A.8), in both orderings, and gradients against central finite
//! differences in float64.

use K::{BorderMode, DType, ImageDimOrdering, PoolMode, Tensor};
use keras::{Array, backend as K};

const TH: Option<ImageDimOrdering> = Some(ImageDimOrdering::Th);
const TF: Option<ImageDimOrdering> = Some(ImageDimOrdering::Tf);
use BorderMode::{Full, Same, Valid};

// ----- helpers -----

/// Deterministic values in [-1, 1), distinct with overwhelming probability.
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

fn array(shape: &[usize], data: Vec<f64>) -> Array {
    Array::from_vec(shape, data).unwrap()
}

fn random_array(shape: &[usize], seed: u64) -> Array {
    array(shape, values(shape.iter().product(), seed))
}

fn ph64(shape: &[usize]) -> Tensor {
    K::placeholder_with(shape.to_vec(), Some(DType::F64), None)
}

/// Evaluates `outputs` with each placeholder fed its array.
fn eval(feeds: &[(&Tensor, &Array)], outputs: &[Tensor]) -> Vec<Array> {
    let inputs: Vec<Tensor> = feeds.iter().map(|(t, _)| (*t).clone()).collect();
    let arrays: Vec<Array> = feeds.iter().map(|(_, a)| (*a).clone()).collect();
    K::function(&inputs, outputs, &[]).unwrap().call(&arrays).unwrap()
}

fn assert_close(got: &Array, shape: &[usize], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.shape(), shape, "{what}: shape");
    for (i, (g, w)) in got.to_f64_vec().iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{what}: element {i}: got {g}, want {w}");
    }
}

/// Row-major multi-indices of `shape`.
fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let mut all = vec![vec![]];
    for &d in shape {
        all = all.into_iter().flat_map(|p: Vec<usize>| (0..d).map(move |i| [p.clone(), vec![i]].concat())).collect();
    }
    all
}

fn flat(shape: &[usize], index: &[usize]) -> usize {
    shape.iter().zip(index).fold(0, |acc, (&d, &i)| acc * d + i)
}

/// `numpy.transpose(data, perm)`.
fn permuted(a: &Array, perm: &[usize]) -> Array {
    let (shape, data) = (a.shape().to_vec(), a.to_f64_vec());
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let out: Vec<f64> = indices(&out_shape)
        .iter()
        .map(|idx| {
            let mut src = vec![0; shape.len()];
            for (k, &p) in perm.iter().enumerate() {
                src[p] = idx[k];
            }
            data[flat(&shape, &src)]
        })
        .collect();
    array(&out_shape, out)
}

/// `(B, S..., C)` → `(B, C, S...)`.
fn image_to_th(a: &Array) -> Array {
    let r = a.ndim();
    permuted(a, &[&[0, r - 1][..], &(1..r - 1).collect::<Vec<_>>()].concat())
}

/// `(B, C, S...)` → `(B, S..., C)`.
fn image_to_tf(a: &Array) -> Array {
    let r = a.ndim();
    permuted(a, &[&[0][..], &(2..r).collect::<Vec<_>>(), &[1]].concat())
}

/// `(K..., in, out)` → `(out, in, K...)`.
fn kernel_to_th(a: &Array) -> Array {
    let r = a.ndim();
    permuted(a, &[&[r - 1, r - 2][..], &(0..r - 2).collect::<Vec<_>>()].concat())
}

/// Output length and padding before, per README A.8 (`k_eff` is the dilated kernel span).
fn geometry(mode: BorderMode, n: usize, k_eff: usize, s: usize) -> (usize, usize) {
    match mode {
        Valid => ((n - k_eff) / s + 1, 0),
        Same => {
            let out = n.div_ceil(s);
            let total = ((out - 1) * s + k_eff).saturating_sub(n);
            (out, total / 2)
        }
        Full => ((n + k_eff - 2) / s + 1, k_eff - 1),
    }
}

/// Channels-last convolution by direct loops: `y[b, p, o] = Σ x[b, p·s + t·d - pad, ci] ·
/// k[t, ci, o]`, with `groups` groups of input channels.
fn reference_conv(
    x: &Array,
    k: &Array,
    strides: &[usize],
    dilation: &[usize],
    mode: BorderMode,
    groups: usize,
) -> Array {
    let (xs, ks) = (x.shape().to_vec(), k.shape().to_vec());
    let (xd, kd) = (x.to_f64_vec(), k.to_f64_vec());
    let n = xs.len() - 2;
    let (batch, cin, cout, cg) = (xs[0], xs[n + 1], ks[n + 1], ks[n]);
    let geo: Vec<(usize, usize)> =
        (0..n).map(|d| geometry(mode, xs[1 + d], (ks[d] - 1) * dilation[d] + 1, strides[d])).collect();
    let out_shape: Vec<usize> = [vec![batch], geo.iter().map(|g| g.0).collect(), vec![cout]].concat();
    let mut out = vec![0.0; out_shape.iter().product()];
    for idx in indices(&out_shape) {
        let (b, p, o) = (idx[0], &idx[1..=n], idx[n + 1]);
        let g = o / (cout / groups);
        let mut sum = 0.0;
        for t in indices(&ks[..n]) {
            let pos: Vec<isize> =
                (0..n).map(|d| (p[d] * strides[d] + t[d] * dilation[d]) as isize - geo[d].1 as isize).collect();
            if pos.iter().zip(&xs[1..=n]).any(|(&q, &len)| q < 0 || q >= len as isize) {
                continue;
            }
            let pos: Vec<usize> = pos.iter().map(|&q| q as usize).collect();
            for c in 0..cg {
                let xi = flat(&xs, &[&[b][..], &pos, &[g * (cin / groups) + c]].concat());
                let ki = flat(&ks, &[&t[..], &[c, o]].concat());
                sum += xd[xi] * kd[ki];
            }
        }
        out[flat(&out_shape, &idx)] = sum;
    }
    array(&out_shape, out)
}

/// Channels-last pooling by direct loops; `avg` divides by the real cells of each window.
fn reference_pool(x: &Array, window: &[usize], strides: &[usize], mode: BorderMode, pool: PoolMode) -> Array {
    let (xs, xd) = (x.shape().to_vec(), x.to_f64_vec());
    let n = xs.len() - 2;
    let geo: Vec<(usize, usize)> = (0..n).map(|d| geometry(mode, xs[1 + d], window[d], strides[d])).collect();
    let out_shape: Vec<usize> = [vec![xs[0]], geo.iter().map(|g| g.0).collect(), vec![xs[n + 1]]].concat();
    let mut out = vec![0.0; out_shape.iter().product()];
    for idx in indices(&out_shape) {
        let cells: Vec<f64> = indices(window)
            .iter()
            .filter_map(|t| {
                let pos: Vec<isize> =
                    (0..n).map(|d| (idx[1 + d] * strides[d] + t[d]) as isize - geo[d].1 as isize).collect();
                let inside = pos.iter().zip(&xs[1..=n]).all(|(&q, &len)| q >= 0 && q < len as isize);
                inside.then(|| {
                    let pos: Vec<usize> = pos.iter().map(|&q| q as usize).collect();
                    xd[flat(&xs, &[&[idx[0]][..], &pos, &[idx[n + 1]]].concat())]
                })
            })
            .collect();
        out[flat(&out_shape, &idx)] = match pool {
            PoolMode::Max => cells.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            PoolMode::Avg => cells.iter().sum::<f64>() / cells.len() as f64,
        };
    }
    array(&out_shape, out)
}

/// `deconv2d` by its definition (README A.8), channels last: every `x[b, i, j, ci]·k[r, c,
/// ci, o]` added to `y[b, i·s + r - p, j·s + c - p, o]` when inside the output.
fn reference_deconv(x: &Array, k: &Array, out_shape: &[usize], strides: (usize, usize), mode: BorderMode) -> Array {
    let (xs, ks) = (x.shape().to_vec(), k.shape().to_vec());
    let (xd, kd) = (x.to_f64_vec(), k.to_f64_vec());
    let pad = |d: usize, s: usize| match mode {
        Valid => 0,
        _ => ((xs[1 + d] - 1) * s + ks[d]).saturating_sub(out_shape[1 + d]) / 2,
    };
    let (pr, pc) = (pad(0, strides.0), pad(1, strides.1));
    let mut y = vec![0.0; out_shape.iter().product()];
    for [b, i, j, ci] in indices(&xs).iter().map(|v| [v[0], v[1], v[2], v[3]]) {
        for [r, c, o] in indices(&[ks[0], ks[1], ks[3]]).iter().map(|v| [v[0], v[1], v[2]]) {
            let (row, col) = ((i * strides.0 + r) as isize - pr as isize, (j * strides.1 + c) as isize - pc as isize);
            if row < 0 || col < 0 || row >= out_shape[1] as isize || col >= out_shape[2] as isize {
                continue;
            }
            y[flat(out_shape, &[b, row as usize, col as usize, o])] +=
                xd[flat(&xs, &[b, i, j, ci])] * kd[flat(&ks, &[r, c, ci, o])];
        }
    }
    array(out_shape, y)
}

/// Checks `build` in both orderings against `reference` (computed in `tf` layout): the `tf`
/// inputs as given, then the `th` transposes, whose result is transposed back.
fn check_both_orderings(
    x: &Array,
    kernels: &[Array],
    build: impl Fn(&Tensor, &[Tensor], Option<ImageDimOrdering>) -> keras::Result<Tensor>,
    kernel_to_th: impl Fn(&Array) -> Array,
    want: &Array,
    what: &str,
) {
    for ordering in [TF, TH] {
        let th = ordering == TH;
        let x_in = if th { image_to_th(x) } else { x.clone() };
        let ks: Vec<Array> = kernels.iter().map(|k| if th { kernel_to_th(k) } else { k.clone() }).collect();
        let xt = ph64(x_in.shape());
        let kt: Vec<Tensor> = ks.iter().map(|k| ph64(k.shape())).collect();
        let y = build(&xt, &kt, ordering).unwrap();
        let mut feeds = vec![(&xt, &x_in)];
        feeds.extend(kt.iter().zip(&ks));
        let got = eval(&feeds, &[y]).remove(0);
        let got = if th { image_to_tf(&got) } else { got };
        assert_close(&got, want.shape(), &want.to_f64_vec(), 1e-9, &format!("{what} {ordering:?}"));
    }
}

// ----- values by hand -----

/// x = 1..9 as one 3×3 channel; kernel [[1, 2], [3, 4]] (not symmetric, so a flip would show).
fn small_image() -> (Array, Array) {
    let x = Array::from_vec(&[1, 3, 3, 1], (1..=9).map(|v| v as f32).collect()).unwrap();
    let k = Array::from_vec(&[2, 2, 1, 1], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
    (x, k)
}

#[test]
fn conv2d_by_hand_is_a_cross_correlation_in_every_border_mode() {
    let (x, k) = small_image();
    let cases: [(BorderMode, &[usize], &[f32]); 3] = [
        // out[0, 0] = 1·1 + 2·2 + 4·3 + 5·4.
        (Valid, &[2, 2], &[37.0, 47.0, 67.0, 77.0]),
        // Same with an even kernel: the one padding row and column go after.
        (Same, &[3, 3], &[37.0, 47.0, 21.0, 67.0, 77.0, 33.0, 23.0, 26.0, 9.0]),
        // Full: one zero on every side; the corners see one tap each.
        (Full, &[4, 4], &[4.0, 11.0, 18.0, 9.0, 18.0, 37.0, 47.0, 21.0, 36.0, 67.0, 77.0, 33.0, 14.0, 23.0, 26.0, 9.0]),
    ];
    for (mode, spatial, want) in cases {
        let (xt, kt) = (K::placeholder([1, 3, 3, 1]), K::placeholder([2, 2, 1, 1]));
        let tf = K::conv2d(&xt, &kt, (1, 1), mode, TF, (1, 1)).unwrap();
        let (xh, kh) = (K::placeholder([1, 1, 3, 3]), K::placeholder([1, 1, 2, 2]));
        let th = K::conv2d(&xh, &kh, (1, 1), mode, TH, (1, 1)).unwrap();
        let (x_th, k_th) = (x.clone().reshaped(&[1, 1, 3, 3]).unwrap(), k.clone().reshaped(&[1, 1, 2, 2]).unwrap());
        let out = eval(&[(&xt, &x), (&kt, &k), (&xh, &x_th), (&kh, &k_th)], &[tf, th]);
        assert_eq!(out[0].shape(), [&[1][..], spatial, &[1]].concat(), "{mode:?}");
        assert_eq!(out[1].shape(), [&[1, 1][..], spatial].concat(), "{mode:?}");
        assert_eq!(out[0].to_vec::<f32>().unwrap(), want, "{mode:?} tf");
        assert_eq!(out[1].to_vec::<f32>().unwrap(), want, "{mode:?} th");
    }
}

#[test]
fn strided_and_dilated_conv2d_by_hand() {
    // x = 1..25 as 5×5; kernel [[1, 2], [3, 4]].
    let x = array(&[1, 5, 5, 1], (1..=25).map(f64::from).collect());
    let k = array(&[2, 2, 1, 1], vec![1.0, 2.0, 3.0, 4.0]);
    let (xt, kt) = (ph64(&[1, 5, 5, 1]), ph64(&[2, 2, 1, 1]));
    // Stride 2, same: out = ceil(5 / 2) = 3, total padding (3-1)·2 + 2 - 5 = 1, after.
    let strided = K::conv2d(&xt, &kt, (2, 2), Same, TF, (1, 1)).unwrap();
    // Dilation 2: taps at offsets 0 and 2, span 3, valid out 3.
    let dilated = K::conv2d(&xt, &kt, (1, 1), Valid, TF, (2, 2)).unwrap();
    let atrous = K::atrous_conv2d(&xt, &kt, 2, Valid, TF).unwrap();
    let out = eval(&[(&xt, &x), (&kt, &k)], &[strided, dilated, atrous]);
    let v = |r: usize, c: usize| if r < 5 && c < 5 { (r * 5 + c + 1) as f64 } else { 0.0 };
    let strided_want: Vec<f64> = indices(&[3, 3])
        .iter()
        .map(|p| {
            let (r, c) = (2 * p[0], 2 * p[1]);
            v(r, c) + 2.0 * v(r, c + 1) + 3.0 * v(r + 1, c) + 4.0 * v(r + 1, c + 1)
        })
        .collect();
    assert_close(&out[0], &[1, 3, 3, 1], &strided_want, 0.0, "stride 2 same");
    assert_eq!(out[0].to_f64_vec()[8], 25.0, "the last window holds only x[4, 4]");
    // out[0, 0] = 1·1 + 3·2 + 11·3 + 13·4.
    assert_eq!(out[1].to_f64_vec()[0], 92.0);
    let dilated_want: Vec<f64> = indices(&[3, 3])
        .iter()
        .map(|p| {
            let (r, c) = (p[0], p[1]);
            v(r, c) + 2.0 * v(r, c + 2) + 3.0 * v(r + 2, c) + 4.0 * v(r + 2, c + 2)
        })
        .collect();
    assert_close(&out[1], &[1, 3, 3, 1], &dilated_want, 0.0, "dilation 2");
    assert_close(&out[2], &[1, 3, 3, 1], &dilated_want, 0.0, "atrous rate 2");
}

#[test]
fn conv1d_by_hand() {
    // Two steps' windows of length 2 over 4 steps, 2 channels in, 1 out, stride 2.
    let x = array(&[1, 4, 2], vec![1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0]);
    let k = array(&[2, 2, 1], vec![1.0, 0.5, -1.0, 0.25]);
    let (xt, kt) = (ph64(&[1, 4, 2]), ph64(&[2, 2, 1]));
    let valid = K::conv1d(&xt, &kt, 2, Valid).unwrap();
    let same = K::conv1d(&xt, &kt, 1, Same).unwrap();
    let out = eval(&[(&xt, &x), (&kt, &k)], &[valid, same]);
    let step = |t: usize| {
        let at = |s: usize, c: usize| if s < 4 { x.to_f64_vec()[s * 2 + c] } else { 0.0 };
        at(t, 0) + 0.5 * at(t, 1) - at(t + 1, 0) + 0.25 * at(t + 1, 1)
    };
    assert_close(&out[0], &[1, 2, 1], &[step(0), step(2)], 0.0, "valid stride 2");
    assert_close(&out[1], &[1, 4, 1], &[step(0), step(1), step(2), step(3)], 0.0, "same");
    assert_eq!(out[0].to_f64_vec()[0], 1.0 + 5.0 - 2.0 + 5.0);
}

#[test]
fn pooling_by_hand_excludes_padding() {
    let (x, _) = small_image();
    let xt = K::placeholder([1, 3, 3, 1]);
    let avg = K::pool2d(&xt, (2, 2), (1, 1), Same, TF, PoolMode::Avg).unwrap();
    let max = K::pool2d(&xt, (2, 2), (1, 1), Same, TF, PoolMode::Max).unwrap();
    let max_valid = K::pool2d(&xt, (2, 2), (1, 1), Valid, TF, PoolMode::Max).unwrap();
    let avg_s2 = K::pool2d(&xt, (2, 2), (2, 2), Same, TF, PoolMode::Avg).unwrap();
    let out = eval(&[(&xt, &x)], &[avg, max, max_valid, avg_s2]);
    // The last column and row windows hold 2 real cells, the corner 1: they are averaged over
    // those only.
    assert_eq!(out[0].to_vec::<f32>().unwrap(), [3.0, 4.0, 4.5, 6.0, 7.0, 7.5, 7.5, 8.5, 9.0]);
    assert_eq!(out[1].to_vec::<f32>().unwrap(), [5.0, 6.0, 6.0, 8.0, 9.0, 9.0, 8.0, 9.0, 9.0]);
    assert_eq!(out[2].to_vec::<f32>().unwrap(), [5.0, 6.0, 8.0, 9.0]);
    assert_eq!(out[3].to_vec::<f32>().unwrap(), [3.0, 4.5, 7.5, 9.0]);
    // Negative values: padding (never a candidate) must not win a max as a 0.
    let neg = Array::from_vec(&[1, 1, 3, 3], (1..=9).map(|v| -(v as f32)).collect()).unwrap();
    let xh = K::placeholder([1, 1, 3, 3]);
    let max_th = K::pool2d(&xh, (2, 2), (1, 1), Same, TH, PoolMode::Max).unwrap();
    let out = eval(&[(&xh, &neg)], &[max_th]);
    assert_eq!(out[0].to_vec::<f32>().unwrap(), [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0, -9.0]);
}

#[test]
fn resize_by_hand_repeats_rows_and_columns() {
    let x = Array::from([[1.0f32, 2.0], [3.0, 4.0]]).reshaped(&[1, 2, 2, 1]).unwrap();
    let xt = K::placeholder([None, Some(2), Some(2), Some(1)]);
    let y = K::resize_images(&xt, 2, 3, TF).unwrap();
    assert_eq!(y.shape(), [None, Some(4), Some(6), Some(1)]);
    let xh = K::placeholder([1, 1, 2, 2]);
    let yh = K::resize_images(&xh, 2, 3, TH).unwrap();
    let out = eval(&[(&xt, &x), (&xh, &x.clone().reshaped(&[1, 1, 2, 2]).unwrap())], &[y, yh]);
    let row_a = [1.0f32, 1.0, 1.0, 2.0, 2.0, 2.0];
    let row_b = [3.0f32, 3.0, 3.0, 4.0, 4.0, 4.0];
    let want = [row_a, row_a, row_b, row_b].concat();
    assert_eq!(out[0].shape(), [1, 4, 6, 1]);
    assert_eq!(out[0].to_vec::<f32>().unwrap(), want);
    assert_eq!(out[1].shape(), [1, 1, 4, 6]);
    assert_eq!(out[1].to_vec::<f32>().unwrap(), want);

    // Volumes: depth ×2, height ×1, width ×3 on (1, 2, 1, 2, 2) channels last.
    let v = random_array(&[1, 2, 1, 2, 2], 7);
    let vt = ph64(v.shape());
    let vh = ph64(image_to_th(&v).shape());
    let out = eval(
        &[(&vt, &v), (&vh, &image_to_th(&v))],
        &[K::resize_volumes(&vt, 2, 1, 3, TF).unwrap(), K::resize_volumes(&vh, 2, 1, 3, TH).unwrap()],
    );
    let vd = v.to_f64_vec();
    let want: Vec<f64> = indices(&[1, 4, 1, 6, 2])
        .iter()
        .map(|i| vd[flat(&[1, 2, 1, 2, 2], &[0, i[1] / 2, 0, i[3] / 3, i[4]])])
        .collect();
    assert_close(&out[0], &[1, 4, 1, 6, 2], &want, 0.0, "resize_volumes tf");
    assert_close(&image_to_tf(&out[1]), &[1, 4, 1, 6, 2], &want, 0.0, "resize_volumes th");
}

// ----- values against the definitions, both orderings -----

#[test]
fn conv2d_matches_direct_loops() {
    let x = random_array(&[2, 7, 6, 3], 1);
    for (taps, strides, mode, dilation) in [
        ((3, 3), (1, 1), Valid, (1, 1)),
        ((3, 3), (2, 2), Same, (1, 1)),
        ((2, 3), (2, 1), Same, (1, 1)),
        ((2, 2), (1, 1), Same, (1, 1)),
        ((3, 2), (2, 2), Valid, (1, 1)),
        ((3, 3), (1, 1), Same, (2, 2)),
        ((2, 2), (1, 1), Full, (1, 1)),
        ((3, 2), (2, 2), Full, (1, 1)),
    ] {
        let k = random_array(&[taps.0, taps.1, 3, 4], 2);
        let want = reference_conv(&x, &k, &[strides.0, strides.1], &[dilation.0, dilation.1], mode, 1);
        let build = |x: &Tensor, k: &[Tensor], o| K::conv2d(x, &k[0], strides, mode, o, dilation);
        let what = format!("conv2d {taps:?} {strides:?} {mode:?} {dilation:?}");
        check_both_orderings(&x, std::slice::from_ref(&k), build, kernel_to_th, &want, &what);
        if strides == (1, 1) {
            let atrous = |x: &Tensor, k: &[Tensor], o| K::atrous_conv2d(x, &k[0], dilation.0, mode, o);
            check_both_orderings(&x, &[k], atrous, kernel_to_th, &want, &format!("atrous {what}"));
        }
    }
}

#[test]
fn conv1d_and_conv3d_match_direct_loops() {
    let x = random_array(&[2, 9, 3], 3);
    let k = random_array(&[3, 3, 2], 4);
    for (stride, mode) in [(1, Valid), (2, Same), (3, Same), (2, Full)] {
        let want = reference_conv(&x, &k, &[stride], &[1], mode, 1);
        let (xt, kt) = (ph64(x.shape()), ph64(k.shape()));
        let y = K::conv1d(&xt, &kt, stride, mode).unwrap();
        let got = eval(&[(&xt, &x), (&kt, &k)], &[y]).remove(0);
        assert_close(&got, want.shape(), &want.to_f64_vec(), 1e-9, &format!("conv1d {stride} {mode:?}"));
    }
    let x = random_array(&[1, 5, 4, 5, 2], 5);
    for (taps, strides, mode) in
        [([3, 2, 3], (1, 1, 1), Valid), ([2, 2, 3], (2, 1, 2), Same), ([3, 3, 3], (2, 2, 2), Same)]
    {
        let k = random_array(&[taps[0], taps[1], taps[2], 2, 3], 6);
        let want = reference_conv(&x, &k, &[strides.0, strides.1, strides.2], &[1, 1, 1], mode, 1);
        let build = |x: &Tensor, k: &[Tensor], o| K::conv3d(x, &k[0], strides, mode, o);
        check_both_orderings(&x, &[k], build, kernel_to_th, &want, &format!("conv3d {taps:?} {strides:?} {mode:?}"));
    }
}

#[test]
fn separable_conv2d_is_depthwise_then_pointwise() {
    let x = random_array(&[2, 6, 5, 2], 8);
    let depthwise = random_array(&[3, 2, 2, 3], 9); // (r, c, C = 2, M = 3)
    let pointwise = random_array(&[1, 1, 6, 4], 10);
    for (strides, mode) in [((1, 1), Valid), ((2, 2), Same), ((2, 1), Valid)] {
        // Intermediate channel ci·M + m: input channel ci alone through depthwise[.., ci, m].
        let dd = depthwise.to_f64_vec();
        let mut grouped = vec![0.0; 3 * 2 * 6];
        for [r, c, ci, m] in indices(&[3, 2, 2, 3]).iter().map(|v| [v[0], v[1], v[2], v[3]]) {
            grouped[flat(&[3, 2, 1, 6], &[r, c, 0, ci * 3 + m])] = dd[flat(&[3, 2, 2, 3], &[r, c, ci, m])];
        }
        let mid = reference_conv(&x, &array(&[3, 2, 1, 6], grouped), &[strides.0, strides.1], &[1, 1], mode, 2);
        let want = reference_conv(&mid, &pointwise, &[1, 1], &[1, 1], Valid, 1);
        let build = |x: &Tensor, k: &[Tensor], o| K::separable_conv2d(x, &k[0], &k[1], strides, mode, o);
        // th kernels: depthwise (M, C, r, c), pointwise (out, C·M, 1, 1): both the conv2d
        // kernel transpose.
        check_both_orderings(
            &x,
            &[depthwise.clone(), pointwise.clone()],
            build,
            kernel_to_th,
            &want,
            &format!("separable {strides:?} {mode:?}"),
        );
    }
}

#[test]
fn deconv2d_matches_its_definition() {
    let x = random_array(&[2, 4, 3, 3], 11);
    for (taps, strides, mode, out_spatial) in [
        ((3, 3), (1, 1), Valid, (6, 5)),
        ((3, 3), (2, 2), Valid, (9, 7)),
        ((3, 2), (2, 2), Valid, (10, 7)),
        ((3, 3), (1, 1), Same, (4, 3)),
        ((3, 3), (2, 2), Same, (8, 6)),
        ((2, 2), (2, 2), Same, (7, 5)),
        ((2, 3), (2, 3), Same, (8, 9)),
    ] {
        let k = random_array(&[taps.0, taps.1, 3, 2], 12); // (r, c, in = 3, nb_filter = 2)
        let out_shape = [2, out_spatial.0, out_spatial.1, 2];
        let want = reference_deconv(&x, &k, &out_shape, strides, mode);
        let build = |x: &Tensor, k: &[Tensor], o: Option<ImageDimOrdering>| {
            let shape = if o == TH { vec![2, 2, out_spatial.0, out_spatial.1] } else { out_shape.to_vec() };
            K::deconv2d(x, &k[0], shape, strides, mode, o)
        };
        check_both_orderings(&x, &[k], build, kernel_to_th, &want, &format!("deconv2d {taps:?} {strides:?} {mode:?}"));
    }
}

#[test]
fn pooling_matches_direct_loops() {
    let x = random_array(&[2, 7, 6, 3], 13);
    for pool in [PoolMode::Max, PoolMode::Avg] {
        for (window, strides, mode) in
            [((2, 2), (2, 2), Valid), ((3, 3), (1, 1), Same), ((3, 2), (2, 2), Same), ((2, 3), (3, 1), Valid)]
        {
            let want = reference_pool(&x, &[window.0, window.1], &[strides.0, strides.1], mode, pool);
            let build = |x: &Tensor, _: &[Tensor], o| K::pool2d(x, window, strides, mode, o, pool);
            check_both_orderings(&x, &[], build, kernel_to_th, &want, &format!("pool2d {pool:?} {window:?} {mode:?}"));
        }
        let x3 = random_array(&[1, 5, 4, 5, 2], 14);
        for (window, strides, mode) in [((2, 2, 2), (2, 2, 2), Valid), ((3, 2, 3), (2, 1, 2), Same)] {
            let want =
                reference_pool(&x3, &[window.0, window.1, window.2], &[strides.0, strides.1, strides.2], mode, pool);
            let build = |x: &Tensor, _: &[Tensor], o| K::pool3d(x, window, strides, mode, o, pool);
            check_both_orderings(&x3, &[], build, kernel_to_th, &want, &format!("pool3d {pool:?} {window:?} {mode:?}"));
        }
    }
}

// ----- unknown sizes -----

#[test]
fn unknown_batch_and_spatial_sizes() {
    let k = random_array(&[3, 3, 3, 4], 15);
    let kt = K::constant(k.clone());
    let x = K::placeholder_with([None, Some(7), Some(7), Some(3)], Some(DType::F64), None);
    let y = K::conv2d(&x, &kt, (2, 2), Same, TF, (1, 1)).unwrap();
    assert_eq!(y.shape(), [None, Some(4), Some(4), Some(4)]);
    let p = K::pool2d(&x, (3, 3), (2, 2), Same, TF, PoolMode::Avg).unwrap();
    assert_eq!(p.shape(), [None, Some(4), Some(4), Some(3)]);
    // Same padding on unknown spatial sizes: built when fed, per fed size.
    let free = K::placeholder_with([None, None, None, Some(3)], Some(DType::F64), None);
    let z = K::conv2d(&free, &kt, (2, 2), Same, TF, (1, 1)).unwrap();
    assert_eq!(z.shape(), [None, None, None, Some(4)]);
    let q = K::pool2d(&free, (3, 3), (2, 2), Same, TF, PoolMode::Max).unwrap();
    let grad = K::gradients(&K::sum(&z, K::Axes::All, false).unwrap(), std::slice::from_ref(&free)).unwrap();
    let f = K::function(&[x, free], &[y, p, z, q, grad[0].clone()], &[]).unwrap();
    for (batch, rows, cols) in [(2, 7, 7), (3, 8, 5)] {
        let xa = random_array(&[batch, 7, 7, 3], 16);
        let fa = random_array(&[batch, rows, cols, 3], 17);
        let out = f.call(&[xa.clone(), fa.clone()]).unwrap();
        let want = reference_conv(&xa, &k, &[2, 2], &[1, 1], Same, 1);
        assert_close(&out[0], want.shape(), &want.to_f64_vec(), 1e-9, "unknown batch conv");
        let want = reference_pool(&xa, &[3, 3], &[2, 2], Same, PoolMode::Avg);
        assert_close(&out[1], want.shape(), &want.to_f64_vec(), 1e-9, "unknown batch pool");
        let want = reference_conv(&fa, &k, &[2, 2], &[1, 1], Same, 1);
        assert_close(&out[2], want.shape(), &want.to_f64_vec(), 1e-9, "unknown spatial conv");
        let want = reference_pool(&fa, &[3, 3], &[2, 2], Same, PoolMode::Max);
        assert_close(&out[3], want.shape(), &want.to_f64_vec(), 1e-9, "unknown spatial pool");
        assert_eq!(out[4].shape(), [batch, rows, cols, 3]);
    }
}

#[test]
fn deconv2d_with_unknown_batch() {
    let x = K::placeholder([None, Some(4), Some(3), Some(3)]);
    let k = K::placeholder([3, 3, 3, 2]);
    let y = K::deconv2d(&x, &k, [None, Some(8), Some(6), Some(2)], (2, 2), Same, TF).unwrap();
    assert_eq!(y.shape(), [None, Some(8), Some(6), Some(2)]);
}

// ----- errors -----

fn error_of(result: keras::Result<Tensor>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn bad_arguments_are_errors_naming_the_function_and_shapes() {
    let x = K::placeholder([2, 7, 7, 5]);
    let k = K::placeholder([3, 3, 3, 4]);
    let err = error_of(K::conv2d(&x, &k, (1, 1), Valid, TF, (1, 1)));
    assert!(err.starts_with("conv2d") && err.contains("(2, 7, 7, 5)") && err.contains("(3, 3, 3, 4)"), "{err}");
    let err = error_of(K::conv2d(&x, &K::placeholder([3, 3, 4]), (1, 1), Valid, TF, (1, 1)));
    assert!(err.starts_with("conv2d") && err.contains("kernel") && err.contains("4-D"), "{err}");
    let err = error_of(K::conv2d(&x, &k, (0, 1), Valid, TF, (1, 1)));
    assert!(err.contains("strides") && err.contains("[0, 1]"), "{err}");
    let err = error_of(K::conv2d(&x, &k, (2, 2), Valid, TF, (2, 2)));
    assert!(err.contains("filter_dilation") && err.contains("(1, 1)"), "{err}");
    let err = error_of(K::conv2d(&x, &k, (1, 1), Valid, TF, (2, 3)));
    assert!(err.contains("equal"), "{err}");
    let err = error_of(K::conv3d(&x, &K::placeholder([3, 3, 3, 5, 2]), (1, 1, 1), Valid, TF));
    assert!(err.starts_with("conv3d") && err.contains("5-D"), "{err}");
    let err = error_of(K::conv1d(&K::placeholder([2, 7, 3]), &K::placeholder([3, 2, 4]), 1, Valid));
    assert!(err.starts_with("conv1d") && err.contains("(2, 7, 3)") && err.contains("(3, 2, 4)"), "{err}");
    let err = error_of(K::pool2d(&x, (2, 2), (1, 1), Full, TF, PoolMode::Max));
    assert!(err.starts_with("pool2d") && err.contains("full"), "{err}");
    let err = error_of(K::pool2d(&x, (0, 2), (1, 1), Valid, TF, PoolMode::Max));
    assert!(err.contains("pool_size"), "{err}");
    let err = error_of(K::resize_images(&x, 0, 2, TF));
    assert!(err.starts_with("resize_images") && err.contains("factors"), "{err}");
    let err = error_of(K::resize_volumes(&x, 1, 2, 2, TF));
    assert!(err.starts_with("resize_volumes") && err.contains("5-D"), "{err}");
    // Absurd sizes are errors, not overflows.
    for mode in [Valid, Same, Full] {
        let err = error_of(K::atrous_conv2d(&x, &K::placeholder([3, 3, 5, 1]), usize::MAX, mode, TF));
        assert!(err.starts_with("atrous_conv2d") && err.contains("overflow"), "{err}");
    }
    let err = error_of(K::pool2d(&x, (usize::MAX, 1), (1, 1), Same, TF, PoolMode::Avg));
    assert!(err.starts_with("pool2d") && err.contains("overflow"), "{err}");
    // A huge stride is fine: one window per dim.
    let one = K::pool2d(&x, (2, 1), (usize::MAX, 1), Same, TF, PoolMode::Avg).unwrap();
    assert_eq!(one.shape(), [Some(2), Some(1), Some(7), Some(5)]);
    let err = error_of(K::resize_images(&x, usize::MAX, 2, TF));
    assert!(err.starts_with("resize_images") && err.contains("overflow"), "{err}");
    // A 'valid' 7×7 input is too small for a 9×9 kernel: the output is empty, not an error.
    let small = K::conv2d(&x, &K::placeholder([9, 9, 5, 1]), (1, 1), Valid, TF, (1, 1)).unwrap();
    assert_eq!(small.shape(), [Some(2), Some(0), Some(0), Some(1)]);

    let xs = K::placeholder([1, 4, 4, 3]);
    let ks = K::placeholder([3, 3, 3, 2]);
    let err = error_of(K::deconv2d(&xs, &ks, [1, 9, 9, 2], (2, 2), Same, TF));
    assert!(err.starts_with("deconv2d") && err.contains("(1, 9, 9, 2)") && err.contains("(1, 4, 4, 3)"), "{err}");
    let err = error_of(K::deconv2d(&xs, &ks, [1, 8, 8, 5], (2, 2), Same, TF));
    assert!(err.contains("2 filters") && err.contains("5 channels"), "{err}");
    let err = error_of(K::deconv2d(&K::placeholder([1, 4, 4, 5]), &ks, [1, 8, 8, 2], (2, 2), Same, TF));
    assert!(err.starts_with("deconv2d") && err.contains("(1, 4, 4, 5)"), "{err}");
    let err = error_of(K::deconv2d(&xs, &ks, [2, 8, 8, 2], (2, 2), Same, TF));
    assert!(err.contains("batch"), "{err}");

    let dw = K::placeholder([3, 3, 3, 2]);
    let err = error_of(K::separable_conv2d(
        &K::placeholder([1, 7, 7, 2]),
        &dw,
        &K::placeholder([1, 1, 6, 4]),
        (1, 1),
        Valid,
        TF,
    ));
    assert!(err.contains("depthwise_kernel") && err.contains("(1, 7, 7, 2)"), "{err}");
    let err = error_of(K::separable_conv2d(&xs, &dw, &K::placeholder([2, 2, 6, 4]), (1, 1), Valid, TF));
    assert!(err.contains("1×1"), "{err}");
    let err = error_of(K::separable_conv2d(&xs, &dw, &K::placeholder([1, 1, 5, 4]), (1, 1), Valid, TF));
    assert!(err.starts_with("separable_conv2d") && err.contains("6") && err.contains("5"), "{err}");

    let ints = K::placeholder_with([1, 4, 4, 3], Some(DType::I32), None);
    assert!(error_of(K::conv2d(&ints, &K::placeholder([3, 3, 3, 2]), (1, 1), Valid, TF, (1, 1))).contains("float"));
    assert_eq!(BorderMode::from_name("same"), Some(Same));
    assert_eq!(BorderMode::from_name("circular"), None);
}

// ----- gradients against central differences (float64) -----

/// Checks the gradient of `sum(build(inputs) · w)` (a fixed random `w`) with respect to every
/// input against central differences.
fn gradient_check(shapes: &[&[usize]], seed: u64, build: impl Fn(&[Tensor]) -> keras::Result<Tensor>) {
    let inputs: Vec<Tensor> = shapes.iter().map(|s| ph64(s)).collect();
    let y = build(&inputs).unwrap();
    let y_shape = y.static_shape().expect("a known output shape");
    let weights = K::constant(random_array(&y_shape, seed + 1000));
    let loss = K::sum(&(&y * &weights).unwrap(), K::Axes::All, false).unwrap();
    let grads = K::gradients(&loss, &inputs).unwrap();
    let f_loss = K::function(&inputs, std::slice::from_ref(&loss), &[]).unwrap();
    let f_grads = K::function(&inputs, &grads, &[]).unwrap();
    let mut arrays: Vec<Array> = shapes.iter().enumerate().map(|(i, s)| random_array(s, seed + i as u64)).collect();
    let analytic = f_grads.call(&arrays).unwrap();
    let h = 1e-5;
    for (i, shape) in shapes.iter().enumerate() {
        let base = arrays[i].to_f64_vec();
        assert_eq!(analytic[i].shape(), *shape);
        let got = analytic[i].to_f64_vec();
        for j in 0..base.len() {
            let mut at = |delta: f64| {
                let mut moved = base.clone();
                moved[j] += delta;
                arrays[i] = array(shape, moved);
                f_loss.call(&arrays).unwrap()[0].to_f64_vec()[0]
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            assert!(
                (numeric - got[j]).abs() <= 1e-6 * (1.0 + numeric.abs()),
                "input {i} element {j}: analytic {} vs numeric {numeric}",
                got[j]
            );
        }
        arrays[i] = array(shape, base);
    }
}

#[test]
fn conv2d_gradients() {
    gradient_check(&[&[2, 5, 6, 3], &[3, 3, 3, 4]], 20, |t| K::conv2d(&t[0], &t[1], (2, 2), Same, TF, (1, 1)));
    gradient_check(&[&[2, 3, 5, 6], &[4, 3, 3, 3]], 21, |t| K::conv2d(&t[0], &t[1], (2, 2), Same, TH, (1, 1)));
    gradient_check(&[&[1, 3, 6, 5], &[2, 3, 2, 3]], 22, |t| K::conv2d(&t[0], &t[1], (1, 1), Same, TH, (1, 1)));
    gradient_check(&[&[1, 6, 6, 2], &[3, 2, 2, 3]], 23, |t| K::conv2d(&t[0], &t[1], (2, 1), Valid, TF, (1, 1)));
    gradient_check(&[&[1, 2, 4, 4], &[2, 2, 2, 2]], 24, |t| K::conv2d(&t[0], &t[1], (1, 1), Full, TH, (1, 1)));
    gradient_check(&[&[1, 7, 7, 2], &[3, 3, 2, 2]], 25, |t| K::atrous_conv2d(&t[0], &t[1], 2, Same, TF));
}

#[test]
fn conv1d_and_conv3d_gradients() {
    gradient_check(&[&[2, 7, 3], &[3, 3, 2]], 30, |t| K::conv1d(&t[0], &t[1], 2, Same));
    gradient_check(&[&[2, 6, 2], &[2, 2, 3]], 31, |t| K::conv1d(&t[0], &t[1], 1, Valid));
    gradient_check(&[&[1, 4, 3, 4, 2], &[2, 2, 3, 2, 2]], 32, |t| K::conv3d(&t[0], &t[1], (2, 1, 2), Same, TF));
    gradient_check(&[&[1, 2, 4, 4, 3], &[2, 2, 2, 2, 2]], 33, |t| K::conv3d(&t[0], &t[1], (1, 1, 1), Valid, TH));
}

#[test]
fn deconv2d_and_separable_conv2d_gradients() {
    gradient_check(&[&[2, 3, 3, 3], &[3, 3, 3, 2]], 40, |t| K::deconv2d(&t[0], &t[1], [2, 6, 6, 2], (2, 2), Same, TF));
    gradient_check(&[&[1, 3, 3, 3], &[2, 3, 3, 3]], 41, |t| K::deconv2d(&t[0], &t[1], [1, 2, 7, 7], (2, 2), Valid, TH));
    gradient_check(&[&[1, 5, 4, 2], &[3, 3, 2, 2], &[1, 1, 4, 3]], 42, |t| {
        K::separable_conv2d(&t[0], &t[1], &t[2], (1, 1), Same, TF)
    });
    gradient_check(&[&[1, 2, 5, 5], &[2, 2, 3, 3], &[3, 4, 1, 1]], 43, |t| {
        K::separable_conv2d(&t[0], &t[1], &t[2], (2, 2), Valid, TH)
    });
}

#[test]
fn pooling_and_resize_gradients() {
    for pool in [PoolMode::Max, PoolMode::Avg] {
        gradient_check(&[&[2, 5, 6, 2]], 50, |t| K::pool2d(&t[0], (3, 3), (2, 2), Same, TF, pool));
        gradient_check(&[&[1, 2, 6, 5]], 51, |t| K::pool2d(&t[0], (2, 2), (1, 1), Valid, TH, pool));
        gradient_check(&[&[1, 4, 3, 4, 2]], 52, |t| K::pool3d(&t[0], (2, 2, 2), (2, 1, 2), Same, TF, pool));
    }
    gradient_check(&[&[2, 2, 3, 2]], 53, |t| K::resize_images(&t[0], 2, 3, TF));
    gradient_check(&[&[1, 2, 3, 2]], 54, |t| K::resize_images(&t[0], 3, 1, TH));
    gradient_check(&[&[1, 2, 2, 1, 2]], 55, |t| K::resize_volumes(&t[0], 2, 1, 3, TH));
}

#[test]
fn second_derivatives() {
    // The kernel gradient as a function of x and the kernel (through the backward-filter and
    // backward-data primitives' own derivatives).
    let weights = random_array(&[2, 3, 3, 2], 60);
    let kernel_gradient = |t: &[Tensor]| {
        let y = K::conv2d(&t[0], &t[1], (2, 2), Same, TF, (1, 1))?;
        let loss = K::sum(&K::square(&(&y * &K::constant(weights.clone()))?)?, K::Axes::All, false)?;
        Ok(K::gradients(&loss, &t[1..])?.remove(0))
    };
    gradient_check(&[&[2, 5, 6, 2], &[3, 3, 2, 2]], 61, kernel_gradient);
    let input_gradient = |t: &[Tensor]| {
        let y = K::conv2d(&t[0], &t[1], (2, 2), Valid, TH, (1, 1))?;
        let loss = K::sum(&K::square(&y)?, K::Axes::All, false)?;
        Ok(K::gradients(&loss, &t[..1])?.remove(0))
    };
    gradient_check(&[&[1, 2, 5, 5], &[2, 2, 3, 3]], 62, input_gradient);
    // Average pooling's backward pass is linear in the output gradient `t[1]`.
    gradient_check(&[&[1, 5, 5, 2], &[1, 3, 3, 2]], 63, |t| {
        let loss =
            K::sum(&(&K::pool2d(&t[0], (3, 3), (2, 2), Same, TF, PoolMode::Avg)? * &t[1])?, K::Axes::All, false)?;
        Ok(K::gradients(&loss, &t[..1])?.remove(0))
    });
    // Max pooling's backward pass differentiated in its output gradient reads the cotangent at
    // each window's maximum: x = 0..15 as 4×4 has its 2×2 maxima at flat 5, 7, 13 and 15, and
    // the cotangent u = 0..15 is read there.
    let x = ph64(&[1, 4, 4, 1]);
    let dy = ph64(&[1, 2, 2, 1]);
    let loss = K::sum(
        &(&K::pool2d(&x, (2, 2), (2, 2), Valid, TF, PoolMode::Max).unwrap() * &dy).unwrap(),
        K::Axes::All,
        false,
    )
    .unwrap();
    let g = K::gradients(&loss, std::slice::from_ref(&x)).unwrap().remove(0);
    let u = K::constant(array(&[1, 4, 4, 1], (0..16).map(f64::from).collect()));
    let ddy = K::gradients(&K::sum(&(&g * &u).unwrap(), K::Axes::All, false).unwrap(), std::slice::from_ref(&dy));
    let (xa, dya) = (array(&[1, 4, 4, 1], (0..16).map(f64::from).collect()), random_array(&[1, 2, 2, 1], 64));
    let out = eval(&[(&x, &xa), (&dy, &dya)], &ddy.unwrap());
    assert_close(&out[0], &[1, 2, 2, 1], &[5.0, 7.0, 13.0, 15.0], 0.0, "max pooling second derivative");
}

// ----- second derivatives of max pooling -----

/// `P·u` by direct loops, channels last: for every window, `u` at the first maximal in-bounds
/// element of `x` in row-major order (strictly greater replaces, so ties keep the first).
fn reference_pool_select(x: &Array, u: &Array, window: &[usize], strides: &[usize], mode: BorderMode) -> Array {
    let (xs, xd, ud) = (x.shape().to_vec(), x.to_f64_vec(), u.to_f64_vec());
    let n = xs.len() - 2;
    let geo: Vec<(usize, usize)> = (0..n).map(|d| geometry(mode, xs[1 + d], window[d], strides[d])).collect();
    let out_shape: Vec<usize> = [vec![xs[0]], geo.iter().map(|g| g.0).collect(), vec![xs[n + 1]]].concat();
    let out: Vec<f64> = indices(&out_shape)
        .iter()
        .map(|idx| {
            let mut best: Option<usize> = None;
            for t in indices(window) {
                let pos: Vec<isize> =
                    (0..n).map(|d| (idx[1 + d] * strides[d] + t[d]) as isize - geo[d].1 as isize).collect();
                if pos.iter().zip(&xs[1..=n]).any(|(&q, &len)| q < 0 || q >= len as isize) {
                    continue;
                }
                let pos: Vec<usize> = pos.iter().map(|&q| q as usize).collect();
                let i = flat(&xs, &[&[idx[0]][..], &pos, &[idx[n + 1]]].concat());
                if best.is_none_or(|b| xd[i] > xd[b]) {
                    best = Some(i);
                }
            }
            best.map_or(0.0, |b| ud[b])
        })
        .collect();
    array(&out_shape, out)
}

/// A pooling built in a given ordering.
type BuildPool = Box<dyn Fn(&Tensor, Option<ImageDimOrdering>) -> keras::Result<Tensor>>;

/// One max pooling case for the second-derivative checks: its channels-last input shape,
/// geometry, and the pooling built in a given ordering.
struct MaxPoolCase {
    name: &'static str,
    shape: Vec<usize>,
    window: Vec<usize>,
    strides: Vec<usize>,
    mode: BorderMode,
    pool: BuildPool,
}

/// Non-overlapping valid windows, overlapping same windows with padding, and a 3-d pooling.
fn max_pool_cases() -> Vec<MaxPoolCase> {
    vec![
        MaxPoolCase {
            name: "pool2d (2, 2) stride 2 valid",
            shape: vec![2, 5, 6, 3],
            window: vec![2, 2],
            strides: vec![2, 2],
            mode: Valid,
            pool: Box::new(|x, o| K::pool2d(x, (2, 2), (2, 2), Valid, o, PoolMode::Max)),
        },
        MaxPoolCase {
            name: "pool2d (3, 3) stride 1 same",
            shape: vec![2, 5, 6, 3],
            window: vec![3, 3],
            strides: vec![1, 1],
            mode: Same,
            pool: Box::new(|x, o| K::pool2d(x, (3, 3), (1, 1), Same, o, PoolMode::Max)),
        },
        MaxPoolCase {
            name: "pool3d (2, 3, 2) stride (2, 1, 2) same",
            shape: vec![1, 4, 5, 4, 2],
            window: vec![2, 3, 2],
            strides: vec![2, 1, 2],
            mode: Same,
            pool: Box::new(|x, o| K::pool3d(x, (2, 3, 2), (2, 1, 2), Same, o, PoolMode::Max)),
        },
    ]
}

/// `dx = d/dx sum(v · maxpool(x))`, then `d/dv` and `d/dx` of `sum(u · dx)`: `P·u` (against the
/// direct loops, ties included) and zero.
#[test]
fn max_pool_second_derivative_reads_the_cotangent_at_the_first_maximum() {
    for MaxPoolCase { name, shape, window, strides, mode, pool } in max_pool_cases() {
        // Values on a coarse grid, so many windows hold tied maxima (the first must win), and
        // mostly negative, so a padding 0 would win if padding took part.
        let x: Vec<f64> = values(shape.iter().product(), 70).iter().map(|v| (v * 3.0).round() - 2.0).collect();
        let x = array(&shape, x);
        let u = random_array(&shape, 71);
        let want = reference_pool_select(&x, &u, &window, &strides, mode);
        for ordering in [TF, TH] {
            let th = ordering == TH;
            let to_layout = |a: &Array| if th { image_to_th(a) } else { a.clone() };
            let (x_in, u_in) = (to_layout(&x), to_layout(&u));
            let v_in = to_layout(&random_array(want.shape(), 72));
            // The batch size is left unknown until fed: the selection is built then.
            let free_batch = |a: &Array| {
                let dims: Vec<Option<usize>> =
                    [None].into_iter().chain(a.shape()[1..].iter().map(|&d| Some(d))).collect();
                K::placeholder_with(dims, Some(DType::F64), None)
            };
            let (xt, ut, vt) = (free_batch(&x_in), free_batch(&u_in), free_batch(&v_in));
            let loss = K::sum(&(&pool(&xt, ordering).unwrap() * &vt).unwrap(), K::Axes::All, false).unwrap();
            let dx = K::gradients(&loss, std::slice::from_ref(&xt)).unwrap().remove(0);
            let outer = K::sum(&(&dx * &ut).unwrap(), K::Axes::All, false).unwrap();
            let second = K::gradients(&outer, &[vt.clone(), xt.clone()]).unwrap();
            let out = eval(&[(&xt, &x_in), (&ut, &u_in), (&vt, &v_in)], &second);
            let got = if th { image_to_tf(&out[0]) } else { out[0].clone() };
            assert_close(&got, want.shape(), &want.to_f64_vec(), 0.0, &format!("{name} {ordering:?} d/dv"));
            assert_close(&out[1], x_in.shape(), &vec![0.0; x.len()], 0.0, &format!("{name} {ordering:?} d/dx"));
        }
    }
}

/// The same second derivatives against central differences of the first derivative, on
/// distinct values (no ties within the step).
#[test]
fn max_pool_second_derivative_matches_finite_differences() {
    for (seed, MaxPoolCase { shape, pool, .. }) in (80..).zip(max_pool_cases()) {
        for ordering in [TF, TH] {
            let x_shape =
                if ordering == TH { image_to_th(&random_array(&shape, 0)).shape().to_vec() } else { shape.clone() };
            let y_shape = pool(&ph64(&x_shape), ordering).unwrap().static_shape().unwrap();
            gradient_check(&[&x_shape, &y_shape], seed, |t| {
                let loss = K::sum(&(&pool(&t[0], ordering)? * &t[1])?, K::Axes::All, false)?;
                Ok(K::gradients(&loss, &t[..1])?.remove(0))
            });
        }
    }
}

/// README section 4's `gradients_conv2d_pool2d_cce_` recipe: `[loss] + K.gradients(loss, [x,
/// kernel, W2])`, for inputs (x, kernel, W2) and one-hot targets `t`.
fn conv_pool_cce_recipe(
    inputs: &[Tensor],
    t: &Tensor,
    ordering: Option<ImageDimOrdering>,
    pool: PoolMode,
) -> keras::Result<Vec<Tensor>> {
    let (x, kernel, w2) = (&inputs[0], &inputs[1], &inputs[2]);
    let y = K::relu(&K::conv2d(x, kernel, (1, 1), Same, ordering, (1, 1))?, 0.0, None)?;
    let y = K::pool2d(&y, (2, 2), (2, 2), Valid, ordering, pool)?;
    let p = K::softmax(&K::dot(&K::batch_flatten(&y)?, w2)?)?;
    let loss = K::mean(&K::categorical_crossentropy(&p, t, false)?, K::Axes::All, false)?;
    let mut outputs = vec![loss.clone()];
    outputs.extend(K::gradients(&loss, inputs)?);
    Ok(outputs)
}

/// `sum(outputs_i · w_i)` over the recipe's outputs, with fixed weights `w_i`.
fn weighted_outputs(outputs: &[Tensor], seed: u64) -> keras::Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for (i, y) in outputs.iter().enumerate() {
        let w = K::constant(random_array(&y.static_shape().unwrap(), seed + i as u64));
        let term = K::sum(&(y * &w)?, K::Axes::All, false)?;
        total = Some(match total {
            Some(sum) => (&sum + &term)?,
            None => term,
        });
    }
    Ok(total.expect("the recipe has outputs"))
}

/// Second derivatives through the recipe with max pooling: gradients of the weighted outputs
/// with respect to x, kernel and W2 build, run, and match central differences in float64; with
/// kernel and W2 as variables (as the recipe has them) they give the same values.
#[test]
fn conv_pool_cce_recipe_second_derivatives_with_max_pooling() {
    let targets = array(&[2, 4], vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    for (seed, ordering) in [(90, TF), (95, TH)] {
        let th = ordering == TH;
        let (x_shape, k_shape): (&[usize], &[usize]) =
            if th { (&[2, 2, 6, 6], &[3, 2, 3, 3]) } else { (&[2, 6, 6, 2], &[3, 3, 2, 3]) };
        let shapes = [x_shape, k_shape, &[27, 4]];
        let build = |t: &[Tensor]| {
            let outputs = conv_pool_cce_recipe(t, &K::constant(targets.clone()), ordering, PoolMode::Max)?;
            weighted_outputs(&outputs, seed + 100)
        };
        gradient_check(&shapes, seed, build);

        // Variables for kernel and W2, at gradient_check's values for the same seed.
        let arrays: Vec<Array> = shapes.iter().enumerate().map(|(i, s)| random_array(s, seed + i as u64)).collect();
        let x = ph64(x_shape);
        let kernel = K::variable_with(arrays[1].clone(), Some(DType::F64), None).unwrap();
        let w2 = K::variable_with(arrays[2].clone(), Some(DType::F64), None).unwrap();
        let vars = [x.clone(), kernel, w2];
        let total = build(&vars).unwrap();
        let with_vars = eval(&[(&x, &arrays[0])], &K::gradients(&total, &vars).unwrap());
        let phs: Vec<Tensor> = shapes.iter().map(|s| ph64(s)).collect();
        let total = build(&phs).unwrap();
        let feeds: Vec<(&Tensor, &Array)> = phs.iter().zip(&arrays).collect();
        let with_phs = eval(&feeds, &K::gradients(&total, &phs).unwrap());
        for (i, (a, b)) in with_vars.iter().zip(&with_phs).enumerate() {
            assert_close(a, b.shape(), &b.to_f64_vec(), 1e-12, &format!("{ordering:?} gradient {i}"));
        }
    }
}
