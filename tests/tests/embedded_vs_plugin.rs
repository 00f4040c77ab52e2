//! The `cpu` backend exists in two forms: linked into `keras` (the embedded default) and as
//! `libkeras_backend_cpu.so` loaded through the plugin boundary. Both must compute the same
//! thing; this runs a few kernels of each family through both and compares bit for bit.

use keras::{Backend, Buffer, registry};
use keras_backend_api::{
    ConvParams, Distribution, Layout, ReduceOp, TensorRef, UnaryOp, abi_stable::std_types::RSlice,
};
use keras_tests::plugin;

/// Deterministic, irregular test data.
fn data(len: usize, phase: f32) -> Vec<f32> {
    (0..len).map(|i| ((i as f32 * 0.37 + phase).sin() * 3.0).round() / 2.0 + 0.25).collect()
}

/// Runs one small program of kernels on `backend` and returns every result, flattened.
fn program(backend: &Backend) -> Vec<Vec<f32>> {
    let k = backend.raw();
    let upload = |values: &[f32]| Buffer::from_slice(backend, values).expect("upload");
    let output = |len: usize| Buffer::alloc(backend, keras_backend_api::DType::F32, len).expect("alloc");
    let view = |b: &Buffer, shape: &'static [usize]| -> TensorRef<'static> { TensorRef::new(b.id(), shape) };

    let a = upload(&data(6 * 5, 0.0));
    let b = upload(&data(5 * 4, 1.0));
    let product = output(6 * 4);
    k.matmul(view(&a, &[6, 5]), view(&b, &[5, 4]), view(&product, &[6, 4]), false, false).unwrap();

    let tanh = output(6 * 4);
    k.unary(UnaryOp::Tanh, view(&product, &[6, 4]), view(&tanh, &[6, 4])).unwrap();

    let row_sums = output(6);
    k.reduce(ReduceOp::Sum, view(&tanh, &[6, 4]), RSlice::from_slice(&[1]), view(&row_sums, &[6])).unwrap();

    let x = upload(&data(2 * 5 * 5 * 3, 2.0));
    let w = upload(&data(3 * 3 * 3 * 4, 3.0));
    let conv = output(2 * 3 * 3 * 4);
    let ones = [1usize, 1];
    let params = ConvParams {
        layout: Layout::ChannelsLast,
        strides: RSlice::from_slice(&[2, 2]),
        dilation: RSlice::from_slice(&ones),
        pad_before: RSlice::from_slice(&ones),
        pad_after: RSlice::from_slice(&ones),
        groups: 1,
    };
    k.conv(view(&x, &[2, 5, 5, 3]), view(&w, &[3, 3, 3, 4]), view(&conv, &[2, 3, 3, 4]), params).unwrap();

    let noise = output(10);
    k.random(Distribution::Normal { mean: 0.0, stddev: 1.0 }, 42, 7, view(&noise, &[10])).unwrap();

    [product, tanh, row_sums, conv, noise].iter().map(|buffer| buffer.to_vec::<f32>().expect("download")).collect()
}

#[test]
fn the_builtin_cpu_and_its_plugin_library_compute_the_same() {
    let builtin = registry::load_in("cpu", &[]).expect("the built-in cpu backend");
    assert!(builtin.library_path().is_none(), "an empty search path must give the built-in backend");
    let library = plugin("cpu");
    let loaded = registry::load(library.to_str().expect("utf-8 path")).expect("the cpu plugin library");
    assert_eq!(loaded.library_path(), Some(library.as_path()));

    let (expected, actual) = (program(&builtin), program(&loaded));
    assert_eq!(expected.len(), actual.len());
    for (i, (e, a)) in expected.iter().zip(&actual).enumerate() {
        assert!(e.iter().any(|v| *v != 0.0), "result {i} is all zeros: the program computes nothing");
        assert_eq!(e, a, "result {i} differs between the built-in and the plugin library");
    }
    assert_eq!(builtin.live_buffers(), 0, "every Buffer was freed on drop");
    assert_eq!(loaded.live_buffers(), 0, "every Buffer was freed on drop");
}
