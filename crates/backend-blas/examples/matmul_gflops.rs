//! f32 matmul throughput of the `cpu` and `blas` backends side by side, measured in one run:
//! square products of 1024³ and 2048³ on one and on two threads, median GFLOP/s over several
//! timed repeats after warm-up.
//!
//! ```sh
//! cargo run --release -p backend-blas --example matmul_gflops
//! ```
//!
//! Both backends are called through the plugin contract's `matmul`, as a program would. The
//! `cpu` GEMM takes its threads from the rayon pool it runs in; OpenBLAS from
//! `openblas_set_num_threads`.

use std::time::{Duration, Instant};

use abi_stable::std_types::RSlice;
use backend_cpu::CpuBackend;
use keras_backend_api::{Backend, BufferId, DType, TensorRef};

/// Untimed runs before measuring, and timed runs, per size.
const RUNS: [(usize, usize, usize); 2] = [(1024, 3, 15), (2048, 2, 7)];
const THREADS: [usize; 2] = [1, 2];

/// A square `n × n` product's operands and result, on one backend.
struct Product<'b> {
    backend: &'b CpuBackend,
    n: usize,
    a: BufferId,
    b: BufferId,
    out: BufferId,
}

impl<'b> Product<'b> {
    fn new(backend: &'b CpuBackend, n: usize) -> Product<'b> {
        let buffer = |seed: usize| {
            let values: Vec<f32> = (0..n * n).map(|i| ((i * 7 + seed) % 13) as f32 / 13.0 - 0.5).collect();
            let id = backend.alloc(DType::F32, values.len()).into_result().expect("alloc");
            backend.upload(id, RSlice::from_slice(bytemuck::cast_slice(&values))).into_result().expect("upload");
            id
        };
        let (a, b) = (buffer(1), buffer(2));
        let out = backend.alloc(DType::F32, n * n).into_result().expect("alloc");
        Product { backend, n, a, b, out }
    }

    fn run(&self) -> Duration {
        let shape = [self.n, self.n];
        let start = Instant::now();
        self.backend
            .matmul(
                TensorRef::new(self.a, &shape),
                TensorRef::new(self.b, &shape),
                TensorRef::new(self.out, &shape),
                false,
                false,
            )
            .into_result()
            .expect("matmul");
        start.elapsed()
    }

    /// Median GFLOP/s over `timed` runs after `warm_up` untimed ones.
    fn gflops(&self, warm_up: usize, timed: usize) -> f64 {
        (0..warm_up).for_each(|_| {
            self.run();
        });
        let mut seconds: Vec<f64> = (0..timed).map(|_| self.run().as_secs_f64()).collect();
        seconds.sort_by(f64::total_cmp);
        2.0 * (self.n as f64).powi(3) / seconds[seconds.len() / 2] / 1e9
    }
}

impl Drop for Product<'_> {
    fn drop(&mut self) {
        for id in [self.a, self.b, self.out] {
            let _ = self.backend.free(id);
        }
    }
}

fn main() {
    let cpu = CpuBackend::new().expect("the cpu backend");
    let blas = keras_backend_blas::new_backend().expect("the blas backend");
    let info = |backend: &CpuBackend| backend.info().into_result().expect("info").device;
    println!("cpu:  {}", info(&cpu));
    println!("blas: {}", info(&blas));
    println!();
    println!("| f32 matmul | threads | cpu GFLOP/s | blas GFLOP/s |");
    println!("|---|---|---|---|");
    for threads in THREADS {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a rayon pool");
        keras_backend_blas::set_num_threads(threads);
        for (n, warm_up, timed) in RUNS {
            let cpu_gflops = pool.install(|| Product::new(&cpu, n).gflops(warm_up, timed));
            // Idle threads of one library spin for a while after its last call; let them stop
            // before timing the other.
            std::thread::sleep(Duration::from_millis(300));
            let blas_gflops = pool.install(|| Product::new(&blas, n).gflops(warm_up, timed));
            std::thread::sleep(Duration::from_millis(300));
            println!("| {n}³ | {threads} | {cpu_gflops:.0} | {blas_gflops:.0} |");
        }
    }
}
