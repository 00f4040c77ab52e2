//! The `blas` backend against an independent reference (matmul, by the definition in f64) and
//! against the `cpu` backend (convolution, whose lowering both share, so only the GEMMs
//! differ), and the CBLAS mapping of every view shape the kernels can produce.

use abi_stable::std_types::{RSlice, RSliceMut};
use backend_cpu::ops::matmul::gemm;
use keras_backend_api::{Backend, BufferId, ConvParams, DType, Layout, TensorRef, shape};

use super::*;

/// Deterministic values in [-1, 1) that are not a simple pattern.
fn data(len: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

fn upload(backend: &CpuBackend, dtype: DType, values: &[f64]) -> BufferId {
    let id = backend.alloc(dtype, values.len()).into_result().unwrap();
    let bytes: Vec<u8> = match dtype {
        DType::F32 => values.iter().flat_map(|&v| (v as f32).to_ne_bytes()).collect(),
        DType::F64 => values.iter().flat_map(|&v| v.to_ne_bytes()).collect(),
        other => panic!("no test data for {other}"),
    };
    backend.upload(id, RSlice::from_slice(&bytes)).into_result().unwrap();
    id
}

/// A buffer of `len` NaNs, so that an element the kernel forgets to write shows.
fn output(backend: &CpuBackend, dtype: DType, len: usize) -> BufferId {
    upload(backend, dtype, &vec![f64::NAN; len])
}

fn download(backend: &CpuBackend, dtype: DType, id: BufferId, len: usize) -> Vec<f64> {
    let size = dtype.size_in_bytes();
    let mut bytes = vec![0u8; len * size];
    backend.download(id, RSliceMut::from_mut_slice(&mut bytes)).into_result().unwrap();
    bytes
        .chunks(size)
        .map(|b| match dtype {
            DType::F32 => f32::from_ne_bytes(b.try_into().unwrap()) as f64,
            _ => f64::from_ne_bytes(b.try_into().unwrap()),
        })
        .collect()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{what} at {i}: {g} vs {w}");
    }
}

/// The batched product by the definition, in f64, broadcasting by index.
fn naive_matmul(a: &[f64], a_shape: &[usize], b: &[f64], b_shape: &[usize], ta: bool, tb: bool) -> Vec<f64> {
    let out_shape = shape::matmul(a_shape, b_shape, ta, tb).unwrap();
    let rank = out_shape.len();
    let (m, n) = (out_shape[rank - 2], out_shape[rank - 1]);
    let [.., ar, ac] = *a_shape else { unreachable!() };
    let [.., br, bc] = *b_shape else { unreachable!() };
    let k = if ta { ar } else { ac };
    let batch_shape = &out_shape[..rank - 2];
    // The flat batch index of `operand` read at output batch coordinates `coords`.
    let batch_of = |coords: &[usize], operand: &[usize]| {
        let dims = &operand[..operand.len() - 2];
        let lead = coords.len() - dims.len();
        dims.iter().zip(&coords[lead..]).fold(0, |acc, (&dim, &c)| acc * dim + if dim == 1 { 0 } else { c })
    };
    let mut out = Vec::new();
    let mut coords = vec![0; batch_shape.len()];
    for _ in 0..batch_shape.iter().product::<usize>() {
        let (a0, b0) = (batch_of(&coords, a_shape) * ar * ac, batch_of(&coords, b_shape) * br * bc);
        for r in 0..m {
            for c in 0..n {
                out.push(
                    (0..k)
                        .map(|p| {
                            let x = if ta { a[a0 + p * ac + r] } else { a[a0 + r * ac + p] };
                            let y = if tb { b[b0 + c * bc + p] } else { b[b0 + p * bc + c] };
                            x * y
                        })
                        .sum(),
                );
            }
        }
        for d in (0..coords.len()).rev() {
            coords[d] += 1;
            if coords[d] < batch_shape[d] {
                break;
            }
            coords[d] = 0;
        }
    }
    out
}

/// `matmul` on the `blas` backend, compared with [`naive_matmul`].
fn check_matmul(dtype: DType, a_shape: &[usize], b_shape: &[usize], ta: bool, tb: bool) {
    let backend = new_backend().unwrap();
    let (a, b) = (data(a_shape.iter().product(), 1), data(b_shape.iter().product(), 2));
    let want = naive_matmul(&a, a_shape, &b, b_shape, ta, tb);
    let out_shape = shape::matmul(a_shape, b_shape, ta, tb).unwrap();
    let (a_id, b_id, out_id) =
        (upload(&backend, dtype, &a), upload(&backend, dtype, &b), output(&backend, dtype, want.len()));
    backend
        .matmul(
            TensorRef::new(a_id, a_shape),
            TensorRef::new(b_id, b_shape),
            TensorRef::new(out_id, &out_shape),
            ta,
            tb,
        )
        .into_result()
        .unwrap();
    let tol = if dtype == DType::F32 { 1e-4 } else { 1e-12 };
    let what = format!("{dtype} {a_shape:?}·{b_shape:?} (transpose {ta}, {tb})");
    assert_close(&what, &download(&backend, dtype, out_id, want.len()), &want, tol);
}

#[test]
fn matmul_every_transpose_flag() {
    for dtype in [DType::F32, DType::F64] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for (m, k, n) in [(1, 1, 1), (1, 7, 5), (6, 1, 4), (17, 33, 9), (130, 70, 65)] {
                let a_shape = if ta { [k, m] } else { [m, k] };
                let b_shape = if tb { [n, k] } else { [k, n] };
                check_matmul(dtype, &a_shape, &b_shape, ta, tb);
            }
        }
    }
}

#[test]
fn matmul_broadcasts_batches() {
    for dtype in [DType::F32, DType::F64] {
        // One weight matrix for every batch (folded into one GEMM), and the same unfoldable.
        check_matmul(dtype, &[5, 2, 3], &[3, 4], false, false);
        check_matmul(dtype, &[5, 3, 2], &[1, 3, 4], true, false);
        check_matmul(dtype, &[2, 1, 3, 4], &[5, 4, 6], false, false);
        check_matmul(dtype, &[3, 4], &[2, 5, 4, 6], false, false);
        check_matmul(dtype, &[2, 1, 6, 4], &[3, 5, 6], true, true);
        check_matmul(dtype, &[4, 7, 9], &[4, 3, 9], false, true);
        // Many small products, spread over rayon's pool, each an OpenBLAS call.
        check_matmul(dtype, &[300, 8, 16], &[300, 8, 16], false, true);
    }
}

#[test]
fn matmul_empty_contraction_gives_zeros() {
    let backend = new_backend().unwrap();
    let (a, b, out) =
        (output(&backend, DType::F32, 0), output(&backend, DType::F32, 0), output(&backend, DType::F32, 6));
    backend
        .matmul(TensorRef::new(a, &[2, 0]), TensorRef::new(b, &[0, 3]), TensorRef::new(out, &[2, 3]), false, false)
        .into_result()
        .unwrap();
    assert_eq!(download(&backend, DType::F32, out, 6), [0.0; 6]);
}

/// A view of `data` with the given layout.
fn view(data: &[f64], rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> MatView<'_, f64> {
    MatView { data, rows, cols, row_stride, col_stride }
}

#[test]
fn views_map_to_cblas_or_fall_back() {
    let d = vec![0.0; 64];
    let plain = |transposed, ld| Some(Operand { transposed, ld });
    assert_eq!(Operand::of(&view(&d, 3, 4, 4, 1)), plain(false, 4));
    assert_eq!(Operand::of(&view(&d, 3, 4, 9, 1)), plain(false, 9), "a block of a wider matrix");
    assert_eq!(Operand::of(&view(&d, 3, 4, 1, 3)), plain(true, 3), "a transposed matrix");
    assert_eq!(Operand::of(&view(&d, 3, 4, 1, 5)), plain(true, 5), "a transposed block");
    assert_eq!(Operand::of(&view(&d, 1, 4, 0, 1)), plain(false, 4), "one row: its stride is never used");
    assert_eq!(Operand::of(&view(&d, 1, 4, 7, 3)), plain(true, 3), "one strided row");
    assert_eq!(Operand::of(&view(&d, 4, 1, 1, 0)), plain(false, 1), "one column");
    assert_eq!(Operand::of(&view(&d, 4, 1, 3, 9)), plain(false, 3), "one strided column");
    assert_eq!(Operand::of(&view(&d, 3, 4, 8, 2)), None, "both directions strided");
    assert_eq!(Operand::of(&view(&d, 3, 4, 0, 1)), None, "every row the same");
    assert_eq!(Operand::of(&view(&d, 3, 4, 2, 1)), None, "rows overlapping");
}

#[test]
fn gemm_on_openblas_matches_the_rust_engine_on_every_view() {
    let d = data(400, 7);
    // (lhs, rhs) pairs: plain, blocks of wider matrices, transposed, single rows and
    // columns, and views CBLAS cannot take (which fall back).
    let cases = [
        (view(&d, 5, 7, 7, 1), view(&d[50..], 7, 3, 3, 1)),
        (view(&d, 5, 7, 11, 1), view(&d[50..], 7, 3, 6, 1)),
        (view(&d, 5, 7, 1, 5), view(&d[50..], 7, 3, 1, 7)),
        (view(&d, 1, 7, 0, 1), view(&d[50..], 7, 1, 1, 0)),
        (view(&d, 1, 7, 9, 2), view(&d[50..], 7, 1, 4, 9)),
        (view(&d, 5, 7, 16, 2), view(&d[50..], 7, 3, 0, 1)),
    ];
    for (i, (lhs, rhs)) in cases.into_iter().enumerate() {
        let (m, n) = (lhs.rows, rhs.cols);
        for accumulate in [false, true] {
            // Destination rows 2 apart more than needed: the gap must stay as it was.
            let stride = n + 2;
            let start: Vec<f64> = (0..m * stride).map(|j| j as f64).collect();
            let (mut want, mut got) = (start.clone(), start.clone());
            gemm(&RustGemm, lhs, rhs, &mut want, stride, accumulate).unwrap();
            gemm(&OpenBlas, lhs, rhs, &mut got, stride, accumulate).unwrap();
            assert_close(&format!("case {i}, accumulate {accumulate}"), &got, &want, 1e-13);
            for r in 0..m {
                assert_eq!(got[r * stride + n..(r + 1) * stride], start[r * stride + n..(r + 1) * stride]);
            }
        }
    }
}

#[test]
fn gemm_overwrites_a_nan_destination() {
    let (a, b) = ([1.0f32, 2.0, 3.0, 4.0], [1.0f32, 0.0, 0.0, 1.0]);
    let mut c = [f32::NAN; 4];
    gemm(&OpenBlas, MatView::row_major(&a, 2, 2), MatView::row_major(&b, 2, 2), &mut c, 2, false).unwrap();
    assert_eq!(c, a);
}

/// One convolution: layout, input spatial dims, kernel spatial dims and the parameters.
struct Conv {
    layout: Layout,
    batch: usize,
    channels: usize,
    out_channels: usize,
    groups: usize,
    input: Vec<usize>,
    window: Vec<usize>,
    strides: Vec<usize>,
    dilation: Vec<usize>,
    pad_before: Vec<usize>,
    pad_after: Vec<usize>,
}

impl Conv {
    fn new(layout: Layout, input: &[usize], window: &[usize]) -> Conv {
        let ones = vec![1; input.len()];
        Conv {
            layout,
            batch: 3,
            channels: 4,
            out_channels: 6,
            groups: 1,
            input: input.to_vec(),
            window: window.to_vec(),
            strides: ones.clone(),
            dilation: ones,
            pad_before: vec![0; input.len()],
            pad_after: vec![0; input.len()],
        }
    }

    fn params(&self) -> ConvParams<'_> {
        ConvParams {
            layout: self.layout,
            strides: RSlice::from_slice(&self.strides),
            dilation: RSlice::from_slice(&self.dilation),
            pad_before: RSlice::from_slice(&self.pad_before),
            pad_after: RSlice::from_slice(&self.pad_after),
            groups: self.groups,
        }
    }

    fn image(&self, channels: usize, spatial: &[usize]) -> Vec<usize> {
        match self.layout {
            Layout::ChannelsFirst => [self.batch, channels].iter().chain(spatial).copied().collect(),
            Layout::ChannelsLast => [self.batch].iter().chain(spatial).chain([&channels]).copied().collect(),
        }
    }

    fn shapes(&self) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
        let out: Vec<usize> = (0..self.input.len())
            .map(|d| {
                let extent = self.dilation[d] * (self.window[d] - 1) + 1;
                (self.input[d] + self.pad_before[d] + self.pad_after[d] - extent) / self.strides[d] + 1
            })
            .collect();
        let group_in = self.channels / self.groups;
        let kernel = match self.layout {
            Layout::ChannelsFirst => [self.out_channels, group_in].iter().chain(&self.window).copied().collect(),
            Layout::ChannelsLast => self.window.iter().chain([&group_in, &self.out_channels]).copied().collect(),
        };
        (self.image(self.channels, &self.input), kernel, self.image(self.out_channels, &out))
    }

    /// Forward, data gradient and filter gradient on `backend`.
    fn run(&self, backend: &CpuBackend, dtype: DType) -> [Vec<f64>; 3] {
        let (x_shape, k_shape, y_shape) = self.shapes();
        let len = |s: &[usize]| s.iter().product::<usize>();
        let x = upload(backend, dtype, &data(len(&x_shape), 11));
        let k = upload(backend, dtype, &data(len(&k_shape), 12));
        let dy = upload(backend, dtype, &data(len(&y_shape), 13));
        let (y, dx, dk) = (
            output(backend, dtype, len(&y_shape)),
            output(backend, dtype, len(&x_shape)),
            output(backend, dtype, len(&k_shape)),
        );
        let t = |id, shape| TensorRef::new(id, shape);
        backend.conv(t(x, &x_shape), t(k, &k_shape), t(y, &y_shape), self.params()).into_result().unwrap();
        backend
            .conv_backward_data(t(dy, &y_shape), t(k, &k_shape), t(dx, &x_shape), self.params())
            .into_result()
            .unwrap();
        backend
            .conv_backward_filter(t(x, &x_shape), t(dy, &y_shape), t(dk, &k_shape), self.params())
            .into_result()
            .unwrap();
        [
            download(backend, dtype, y, len(&y_shape)),
            download(backend, dtype, dx, len(&x_shape)),
            download(backend, dtype, dk, len(&k_shape)),
        ]
    }
}

#[test]
fn conv_forward_and_backward_agree_with_cpu() {
    let mut cases = Vec::new();
    for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
        cases.push(Conv::new(layout, &[9], &[3]));
        cases.push(Conv {
            strides: vec![2, 1],
            pad_before: vec![1, 1],
            pad_after: vec![1, 1],
            ..Conv::new(layout, &[8, 7], &[3, 3])
        });
        cases.push(Conv { dilation: vec![2, 2], groups: 2, ..Conv::new(layout, &[9, 9], &[3, 2]) });
        cases.push(Conv::new(layout, &[6, 5], &[1, 1]));
        cases.push(Conv { pad_before: vec![1, 0, 1], ..Conv::new(layout, &[4, 5, 3], &[2, 3, 2]) });
        // Large enough that the GEMMs go multithreaded and the im2col runs in chunks.
        cases.push(Conv { batch: 2, channels: 16, out_channels: 32, ..Conv::new(layout, &[40, 40], &[3, 3]) });
    }
    let (cpu, blas) = (CpuBackend::new().unwrap(), new_backend().unwrap());
    for (i, case) in cases.iter().enumerate() {
        for (dtype, tol) in [(DType::F32, 1e-4), (DType::F64, 1e-12)] {
            let (want, got) = (case.run(&cpu, dtype), case.run(&blas, dtype));
            for (what, (g, w)) in ["forward", "backward data", "backward filter"].iter().zip(got.iter().zip(&want)) {
                assert!(w.iter().any(|&v| v != 0.0), "case {i} {what}: the reference is all zeros");
                assert_close(&format!("case {i} {dtype} {what}"), g, w, tol);
            }
        }
    }
}

#[test]
fn info_names_blas_openblas_and_its_threads() {
    let info = new_backend().unwrap().info().into_result().unwrap();
    assert_eq!(info.name.as_str(), "blas");
    assert!(info.device.contains("OpenBLAS "), "{}", info.device);
    assert!(info.device.contains(&core_name()), "{} should name the core {}", info.device, core_name());
    assert_eq!(info.threads as usize, num_threads());
    assert!(info.device.ends_with(&format!("({} threads)", num_threads())), "{}", info.device);
}

/// This library's global allocator is the page pool (as in the `cpu` plugin), so the tests
/// here run every kernel on its memory; zeroed memory made of a freed buffer's pages is zero.
#[test]
fn large_allocations_come_from_the_page_pool_and_zeroed_ones_are_zero() {
    assert!(backend_cpu::pages::is_global_allocator());
    for (written, zeroed) in [(200_000, 300_000), (300_000, 100_000), (70_000, 1_000_000)] {
        let old = std::hint::black_box(vec![0xA5u8; written]);
        drop(old);
        let fresh = std::hint::black_box(vec![0u8; zeroed]);
        assert!(fresh.iter().all(|&b| b == 0), "{zeroed} zeroed bytes after {written} written ones");
    }
}
