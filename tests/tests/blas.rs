//! `libkeras_backend_blas.so` loaded through the plugin boundary: it computes what the
//! built-in `cpu` backend computes (its GEMMs run on OpenBLAS instead, so within float
//! tolerance, not bit for bit), and `keras-cli` shows it with OpenBLAS and its thread count.

use keras::{Backend, Buffer, registry};
use keras_backend_api::{ConvParams, DType, Layout, TensorRef, abi_stable::std_types::RSlice};
use keras_tests::{plugin, run_cli};

/// Deterministic, irregular values in [-1, 1].
fn data(len: usize, phase: f64) -> Vec<f64> {
    (0..len).map(|i| (i as f64 * 0.37 + phase).sin()).collect()
}

fn view<'a>(buffer: &Buffer, shape: &'a [usize]) -> TensorRef<'a> {
    TensorRef::new(buffer.id(), shape)
}

/// Matmuls (every transpose flag, a broadcast batch, f32 and f64) and the three convolution
/// kernels (both layouts) on `backend`; every result, widened to f64.
fn program(backend: &Backend) -> Vec<(String, Vec<f64>)> {
    let k = backend.raw();
    let mut results = Vec::new();
    let mut record = |what: String, buffer: &Buffer| {
        let values = match buffer.dtype() {
            DType::F32 => buffer.to_vec::<f32>().unwrap().into_iter().map(f64::from).collect(),
            _ => buffer.to_vec::<f64>().unwrap(),
        };
        results.push((what, values));
    };

    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let (a_shape, b_shape): (&[usize], &[usize]) = match (ta, tb) {
            (false, false) => (&[4, 37, 19], &[19, 23]),
            (true, false) => (&[4, 19, 37], &[1, 19, 23]),
            (false, true) => (&[4, 37, 19], &[4, 23, 19]),
            (true, true) => (&[2, 1, 19, 37], &[3, 23, 19]),
        };
        let out_shape = keras_backend_api::shape::matmul(a_shape, b_shape, ta, tb).unwrap();
        let len = |s: &[usize]| s.iter().product::<usize>();
        let a32: Vec<f32> = data(len(a_shape), 0.0).into_iter().map(|v| v as f32).collect();
        let b32: Vec<f32> = data(len(b_shape), 1.0).into_iter().map(|v| v as f32).collect();
        let (a, b) = (Buffer::from_slice(backend, &a32).unwrap(), Buffer::from_slice(backend, &b32).unwrap());
        let out = Buffer::alloc(backend, DType::F32, len(&out_shape)).unwrap();
        k.matmul(view(&a, a_shape), view(&b, b_shape), view(&out, &out_shape), ta, tb).unwrap();
        record(format!("f32 matmul {a_shape:?}·{b_shape:?} ({ta}, {tb})"), &out);

        let (a, b) = (
            Buffer::from_slice(backend, &data(len(a_shape), 2.0)).unwrap(),
            Buffer::from_slice(backend, &data(len(b_shape), 3.0)).unwrap(),
        );
        let out = Buffer::alloc(backend, DType::F64, len(&out_shape)).unwrap();
        k.matmul(view(&a, a_shape), view(&b, b_shape), view(&out, &out_shape), ta, tb).unwrap();
        record(format!("f64 matmul {a_shape:?}·{b_shape:?} ({ta}, {tb})"), &out);
    }

    let ones = [1usize, 1];
    for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
        let (x_shape, k_shape, y_shape): (&[usize], &[usize], &[usize]) = match layout {
            Layout::ChannelsFirst => (&[2, 6, 9, 8], &[8, 3, 3, 3], &[2, 8, 5, 4]),
            Layout::ChannelsLast => (&[2, 9, 8, 6], &[3, 3, 3, 8], &[2, 5, 4, 8]),
        };
        let params = || ConvParams {
            layout,
            strides: RSlice::from_slice(&[2, 2]),
            dilation: RSlice::from_slice(&ones),
            pad_before: RSlice::from_slice(&ones),
            pad_after: RSlice::from_slice(&[1, 0]),
            groups: 2,
        };
        let upload = |shape: &[usize], phase| {
            let values: Vec<f32> = data(shape.iter().product(), phase).into_iter().map(|v| v as f32).collect();
            Buffer::from_slice(backend, &values).unwrap()
        };
        let alloc = |shape: &[usize]| Buffer::alloc(backend, DType::F32, shape.iter().product()).unwrap();
        let (x, w, dy) = (upload(x_shape, 4.0), upload(k_shape, 5.0), upload(y_shape, 6.0));
        let (y, dx, dw) = (alloc(y_shape), alloc(x_shape), alloc(k_shape));
        k.conv(view(&x, x_shape), view(&w, k_shape), view(&y, y_shape), params()).unwrap();
        k.conv_backward_data(view(&dy, y_shape), view(&w, k_shape), view(&dx, x_shape), params()).unwrap();
        k.conv_backward_filter(view(&x, x_shape), view(&dy, y_shape), view(&dw, k_shape), params()).unwrap();
        record(format!("conv {layout:?}"), &y);
        record(format!("conv_backward_data {layout:?}"), &dx);
        record(format!("conv_backward_filter {layout:?}"), &dw);
    }
    results
}

#[test]
fn the_blas_plugin_computes_what_the_builtin_cpu_computes() {
    let cpu = registry::load_in("cpu", &[]).expect("the built-in cpu backend");
    let library = plugin("blas");
    let blas = registry::load(library.to_str().expect("utf-8 path")).expect("the blas plugin library");
    assert_eq!(blas.name(), "blas");
    assert_eq!(blas.library_path(), Some(library.as_path()));

    let (expected, actual) = (program(&cpu), program(&blas));
    assert_eq!(expected.len(), actual.len());
    for ((what, want), (_, got)) in expected.iter().zip(&actual) {
        assert!(want.iter().any(|v| *v != 0.0), "{what}: all zeros, the program computes nothing");
        assert_eq!(want.len(), got.len(), "{what}: lengths");
        let tol = if what.starts_with("f64") { 1e-12 } else { 1e-4 };
        for (i, (w, g)) in want.iter().zip(got).enumerate() {
            assert!((w - g).abs() <= tol * (1.0 + w.abs()), "{what} at {i}: cpu {w}, blas {g}");
        }
    }
    assert_eq!(blas.live_buffers(), 0, "every Buffer was freed on drop");
}

#[test]
fn keras_cli_shows_blas_with_openblas_and_its_thread_count() {
    plugin("blas");
    let home = tempfile::tempdir().unwrap();
    let list = run_cli(home.path(), &[], &["backend", "list"]);
    assert!(list.success, "{list:?}");
    assert!(list.stdout.lines().any(|l| l.starts_with("blas ok ") && l.contains("OpenBLAS ")), "{list:?}");

    for threads in ["1", "2"] {
        let env = [("KERAS_BACKEND", "blas"), ("OPENBLAS_NUM_THREADS", threads)];
        let shown = run_cli(home.path(), &env, &["backend", "--json"]);
        assert!(shown.success, "{shown:?}");
        let shown: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
        assert_eq!(shown["name"], "blas");
        assert_eq!(shown["threads"].to_string(), threads, "OPENBLAS_NUM_THREADS={threads}: {shown}");
        let device = shown["device"].as_str().unwrap();
        assert!(device.contains("OpenBLAS ") && device.ends_with(&format!("({threads} threads)")), "{device}");
    }
}
