//! One compiled function called from many threads at once: the same results as sequential
//! calls, on every backend found; and what concurrent calls promise about variables.
//!
//! The rule (`Function`'s docs): a call reads every variable it uses as they all were at one
//! moment at its start, and replaces every variable it updates at once when it ends. So a call
//! never sees part of another call's updates, and when two calls update the same variable
//! the last one to finish wins (its update was computed from what it read).
//!
//! Also run under the thread sanitizer (`docs/bad-inputs.md`, "Concurrency"), where only the
//! built-in backend is found, all of it instrumented:
//! `RUSTFLAGS=-Zsanitizer=thread cargo +nightly test -Zbuild-std --target x86_64-unknown-linux-gnu
//! -p keras-tests --test concurrency`.

use std::{
    sync::{Arc, Barrier},
    thread,
};

use keras::{
    Array, Backend, Buffer,
    backend::{self as K, Function, Tensor},
    registry,
};

const THREADS: usize = 8;

/// What the contract requires of every value shared between threads.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Function>();
    shared::<Tensor>();
    shared::<Backend>();
    shared::<Buffer>();
    shared::<Array>();
    shared::<keras::Error>();
};

/// The built-in `cpu`, then each workspace plugin library that is built (`cpu`, `blas`).
fn backends() -> Vec<Backend> {
    keras_tests::backends_found()
}

/// Deterministic, irregular values.
fn data(shape: &[usize], phase: f32) -> Array {
    let len = shape.iter().product();
    Array::from_vec(shape, (0..len).map(|i| (i as f32 * 0.37 + phase).sin()).collect()).unwrap()
}

#[test]
fn one_function_from_eight_threads_gives_the_sequential_results() {
    for backend in backends() {
        // A small network with its gradients: matmuls, reductions, element-wise and softmax.
        let (x, w1, w2) = (K::placeholder([None, Some(16)]), K::placeholder([16, 32]), K::placeholder([32, 4]));
        let f = K::with_backend(&backend, || {
            let hidden = K::tanh(&K::dot(&x, &w1)?)?;
            let p = K::softmax(&K::dot(&hidden, &w2)?)?;
            let loss = K::mean(&K::square(&p)?, K::Axes::All, false)?;
            let mut outputs = vec![p, loss.clone()];
            outputs.extend(K::gradients(&loss, &[w1.clone(), w2.clone()])?);
            K::function(&[x.clone(), w1.clone(), w2.clone()], &outputs, &[])
        })
        .unwrap();
        let feeds = |k: usize| vec![data(&[3 + k % 4, 16], k as f32), data(&[16, 32], 0.5), data(&[32, 4], 1.5)];
        let calls = 4 * THREADS;
        let sequential: Vec<Vec<Array>> = (0..calls).map(|k| f.call(&feeds(k)).unwrap()).collect();

        let f = Arc::new(f);
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (f, barrier) = (f.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    (t..calls).step_by(THREADS).map(|k| (k, f.call(&feeds(k)).unwrap())).collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for (k, results) in handle.join().unwrap() {
                assert_eq!(results, sequential[k], "{}: call {k}", backend.name());
            }
        }
    }
}

#[test]
fn concurrent_calls_never_see_part_of_another_calls_updates() {
    // Every call adds 1 to each of 24 variables and returns v_i − v_0 for each: it reads all
    // of them at one moment, and other calls replace all of theirs at once, so every
    // difference it sees is 0.
    for backend in backends() {
        let count = 24;
        let (function, variables) = K::with_backend(&backend, || -> keras::Result<(Function, Vec<Tensor>)> {
            let variables: Vec<Tensor> =
                (0..count).map(|_| K::variable(Array::from([0.0f32]))).collect::<Result<_, _>>()?;
            let differences = variables.iter().map(|v| v - &variables[0]).collect::<Result<Vec<_>, _>>()?;
            let updates = variables.iter().map(|v| Ok((v.clone(), (v + 1.0)?))).collect::<keras::Result<Vec<_>>>()?;
            Ok((K::function(&[], &[K::concatenate(&differences, 0)?], &updates)?, variables))
        })
        .unwrap();
        let function = Arc::new(function);
        let per_thread = 50;
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (function, barrier) = (function.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..per_thread {
                        let seen = function.call(&[]).unwrap()[0].to_vec::<f32>().unwrap();
                        assert!(seen.iter().all(|&d| d == 0.0), "a call saw part of another call's updates: {seen:?}");
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        // Lost updates are allowed (the last to finish wins), torn ones are not: all equal,
        // and at least one call's worth of increments.
        let values: Vec<f32> = variables.iter().map(|v| K::get_value(v).unwrap().to_vec::<f32>().unwrap()[0]).collect();
        assert!(values.iter().all(|&v| v == values[0]), "{}: {values:?}", backend.name());
        assert!((1.0..=(THREADS * per_thread) as f32).contains(&values[0]), "{values:?}");
    }
}

#[test]
fn the_last_call_to_finish_wins() {
    // Each call reads a counter, returns it and stores it plus one. Every value a call
    // returns is one the counter held; the final value is what the last call to finish read,
    // plus one, which may be less than what others read (their increments are lost).
    let backend = registry::load_in("cpu", &[]).unwrap();
    let counter = K::with_backend(&backend, || K::variable(Array::from([0.0f32]))).unwrap();
    let function = Arc::new(
        K::with_backend(&backend, || K::function(&[], &[(&counter * 1.0)?], &[(counter.clone(), (&counter + 1.0)?)]))
            .unwrap(),
    );
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let function = function.clone();
            thread::spawn(move || {
                (0..100).map(|_| function.call(&[]).unwrap()[0].to_vec::<f32>().unwrap()[0]).collect::<Vec<_>>()
            })
        })
        .collect();
    let seen: Vec<f32> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let last = K::get_value(&counter).unwrap().to_vec::<f32>().unwrap()[0];
    let calls = seen.len() as f32;
    assert!(seen.iter().all(|&v| v.fract() == 0.0 && (0.0..calls).contains(&v)), "{seen:?}");
    assert!(seen.contains(&(last - 1.0)), "the final value {last} is some call's read plus one");
    // Sequential calls after the threads are done see every update.
    assert_eq!(function.call(&[]).unwrap()[0].to_vec::<f32>().unwrap(), [last]);
    assert_eq!(K::get_value(&counter).unwrap().to_vec::<f32>().unwrap(), [last + 1.0]);
}

#[test]
fn functions_and_variables_move_between_threads() {
    // Built on one thread, called and read on another: nothing is tied to its thread.
    let backend = registry::load_in("cpu", &[]).unwrap();
    let (f, v) = K::with_backend(&backend, || {
        let v = K::variable(Array::from([1.0f32, 2.0])).unwrap();
        let x = K::placeholder([2]);
        (K::function(std::slice::from_ref(&x), &[(&x * &v).unwrap()], &[]).unwrap(), v)
    });
    let out = thread::spawn(move || {
        let out = f.call(&[Array::from([3.0f32, 4.0])]).unwrap();
        (out, K::get_value(&v).unwrap())
    })
    .join()
    .unwrap();
    assert_eq!(out.0[0].to_vec::<f32>().unwrap(), [3.0, 8.0]);
    assert_eq!(out.1.to_vec::<f32>().unwrap(), [1.0, 2.0]);
}
