//! The device: one CUDA context and stream, the buffer table, the compiled kernel modules, and
//! the launch and error plumbing every op uses.
//!
//! Everything runs on one stream, so work is ordered as the host issues it: a buffer freed
//! after a kernel that reads it is released (stream-ordered) only once that kernel is done, and
//! cudarc's per-buffer event tracking is switched off as redundant.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use cudarc::{
    cublas::CudaBlas,
    cudnn::Cudnn,
    driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DriverError, LaunchConfig},
};
use keras_backend_api::{BackendError, BufferId, DType, ErrorKind, TensorRef, shape::checked_len};
use parking_lot::Mutex;

use crate::{Result, kernels, libraries::Libraries};

/// Which implementation runs convolution and pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPath {
    /// cuDNN (when it loaded and can express the call; otherwise the own kernels).
    Cudnn,
    /// The backend's own implicit-GEMM and pooling kernels.
    Own,
}

impl ConvPath {
    /// The environment variable that chooses the path: `cudnn` (default) or `own`.
    pub const ENV: &'static str = "KERAS_CUDA_CONV";

    fn from_env(cudnn_loaded: bool) -> Result<ConvPath> {
        match std::env::var(Self::ENV).ok().as_deref() {
            None | Some("") | Some("cudnn") if cudnn_loaded => Ok(ConvPath::Cudnn),
            None | Some("") | Some("cudnn") | Some("own") => Ok(ConvPath::Own),
            Some(other) => Err(BackendError::invalid(format!(
                "cuda: {}={other:?} is not a convolution path; use `cudnn` or `own`",
                Self::ENV
            ))),
        }
    }
}

/// The cuDNN handle. cuDNN allows a handle to move between threads but not to be used by two at
/// once; [`Device::cudnn`] keeps it behind a lock, which makes sharing it sound.
pub struct CudnnHandle(pub Arc<Cudnn>);

// SAFETY: see the type's docs: the handle is only reached through a Mutex.
unsafe impl Send for CudnnHandle {}

/// A device buffer and what it holds.
pub struct DeviceBuffer {
    memory: CudaSlice<u8>,
    /// Element type.
    pub dtype: DType,
    /// Element count (the allocation may be larger: CUDA cannot allocate 0 bytes).
    pub len: usize,
}

/// A buffer checked against the shape a kernel call gives it, ready to be passed to a kernel.
/// Holding it keeps the memory alive even if the buffer is freed meanwhile.
#[derive(Clone)]
pub struct Operand {
    /// Device address of element 0.
    pub ptr: u64,
    /// Element type.
    pub dtype: DType,
    /// Element count.
    pub len: usize,
    _buffer: Arc<DeviceBuffer>,
}

/// A kernel: a function of one of [`kernels::SOURCES`].
#[derive(Clone, Copy, Debug)]
pub struct Kernel<'a> {
    /// The source (module) name.
    pub module: &'static str,
    /// The `extern "C"` function name.
    pub function: &'a str,
}

/// The CUDA device the backend runs on.
pub struct Device {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// `sm_XY` of the device, the architecture the kernels are compiled for.
    pub arch: String,
    /// Device name, memory and library versions, for `info`.
    pub description: String,
    /// cuBLAS, bound to the stream (its handle is not thread-safe: hold the lock for a call).
    pub blas: Mutex<CudaBlas>,
    /// cuDNN, when it loaded (one call at a time: hold the lock for a call).
    pub cudnn: Option<Mutex<CudnnHandle>>,
    /// The convolution and pooling implementation chosen at start.
    pub conv_path: ConvPath,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    buffers: Mutex<HashMap<u64, Arc<DeviceBuffer>>>,
    next_id: AtomicU64,
    flag: Mutex<CudaSlice<i32>>,
}

impl Device {
    /// Opens device 0. `libraries` has been checked: the driver, NVRTC and cuBLAS load.
    pub fn open(libraries: Libraries) -> Result<Device> {
        let unavailable =
            |what: &str, e: &dyn std::fmt::Debug| crate::libraries::unavailable(format!("{what} failed: {e:?}"));
        let ctx = CudaContext::new(0).map_err(|e| unavailable("opening GPU 0", &e))?;
        // SAFETY: every buffer and kernel of this backend lives on the one stream below, which
        // orders all uses; no cross-stream synchronisation is needed.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let (major, minor) = ctx.compute_capability().map_err(|e| unavailable("reading the compute capability", &e))?;
        let arch = format!("sm_{major}{minor}");
        let blas = CudaBlas::new(stream.clone()).map_err(|e| unavailable("creating the cuBLAS handle", &e))?;
        let cudnn =
            if libraries.cudnn { Cudnn::new(stream.clone()).ok().map(|h| Mutex::new(CudnnHandle(h))) } else { None };
        let conv_path = ConvPath::from_env(cudnn.is_some())?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let memory = ctx.total_mem().map(|b| format!(", {} MiB", b >> 20)).unwrap_or_default();
        let description = format!(
            "{name} ({arch}{memory}), cuBLAS, {}",
            match conv_path {
                ConvPath::Cudnn => "cuDNN convolution",
                ConvPath::Own => "own convolution kernels",
            }
        );
        let flag = stream.alloc_zeros::<i32>(1).map_err(|e| unavailable("allocating the error flag", &e))?;
        Ok(Device {
            ctx,
            stream,
            arch,
            description,
            blas: Mutex::new(blas),
            cudnn,
            conv_path,
            modules: Mutex::default(),
            functions: Mutex::default(),
            buffers: Mutex::default(),
            next_id: AtomicU64::new(1),
            flag: Mutex::new(flag),
        })
    }

    /// The stream every kernel runs on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    // ----- buffers -----

    /// Allocates `len` elements of `dtype` (content unspecified).
    pub fn alloc(&self, dtype: DType, len: usize) -> Result<BufferId> {
        let bytes = len.checked_mul(dtype.size_in_bytes()).ok_or_else(|| {
            BackendError::invalid(format!("alloc: {len} elements of {dtype} overflow the address space"))
        })?;
        // SAFETY: the content is unspecified until written, as the contract says.
        let memory = unsafe { self.stream.alloc::<u8>(bytes.max(1)) }
            .map_err(|e| driver_error("alloc", &format!("{len} elements of {dtype} ({bytes} bytes)"), e))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.buffers.lock().insert(id, Arc::new(DeviceBuffer { memory, dtype, len }));
        Ok(BufferId(id))
    }

    /// Frees a buffer (stream-ordered: kernels already issued still see it).
    pub fn free(&self, id: BufferId) -> Result<()> {
        match self.buffers.lock().remove(&id.0) {
            Some(_) => Ok(()),
            None => Err(BackendError::invalid(format!("free: unknown buffer {}", id.0))),
        }
    }

    /// Number of live buffers.
    pub fn live_buffers(&self) -> usize {
        self.buffers.lock().len()
    }

    fn buffer(&self, kernel: &str, id: BufferId) -> Result<Arc<DeviceBuffer>> {
        self.buffers
            .lock()
            .get(&id.0)
            .cloned()
            .ok_or_else(|| BackendError::invalid(format!("{kernel}: unknown buffer {}", id.0)))
    }

    /// `tensor`'s buffer, checked to hold exactly as many elements as its shape.
    pub fn operand(&self, kernel: &str, name: &str, tensor: TensorRef<'_>) -> Result<Operand> {
        let buffer = self.buffer(kernel, tensor.buffer)?;
        match checked_len(&tensor.shape) {
            Some(n) if n == buffer.len => {}
            _ => {
                return Err(BackendError::invalid(format!(
                    "{kernel}: `{name}` has shape {:?} but its buffer holds {} elements of {}",
                    tensor.shape.as_slice(),
                    buffer.len,
                    buffer.dtype
                )));
            }
        }
        let (ptr, _) = buffer.memory.device_ptr(&self.stream);
        Ok(Operand { ptr, dtype: buffer.dtype, len: buffer.len, _buffer: buffer })
    }

    /// Copies host bytes into a buffer.
    pub fn upload(&self, id: BufferId, bytes: &[u8]) -> Result<()> {
        let buffer = self.buffer("upload", id)?;
        let expected = buffer.len * buffer.dtype.size_in_bytes();
        if bytes.len() != expected {
            return Err(BackendError::invalid(format!(
                "upload: buffer {} holds {} elements of {} ({expected} bytes) but {} bytes were given",
                id.0,
                buffer.len,
                buffer.dtype,
                bytes.len()
            )));
        }
        if expected == 0 {
            return Ok(());
        }
        let (ptr, _) = buffer.memory.device_ptr(&self.stream);
        // SAFETY: `ptr` holds at least `expected` bytes; the stream orders this write after
        // earlier kernels and before later ones. A copy from pageable host memory returns once
        // the bytes are staged, so `bytes` may be released when this returns.
        unsafe { cudarc::driver::result::memcpy_htod_async(ptr, bytes, self.stream.cu_stream()) }
            .map_err(|e| driver_error("upload", &format!("{expected} bytes"), e))
    }

    /// Copies a buffer into host bytes (waits for the kernels that write it).
    pub fn download(&self, id: BufferId, bytes: &mut [u8]) -> Result<()> {
        let buffer = self.buffer("download", id)?;
        let expected = buffer.len * buffer.dtype.size_in_bytes();
        if bytes.len() != expected {
            return Err(BackendError::invalid(format!(
                "download: buffer {} holds {} elements of {} ({expected} bytes) but {} bytes were asked for",
                id.0,
                buffer.len,
                buffer.dtype,
                bytes.len()
            )));
        }
        if expected == 0 {
            return self.synchronize("download");
        }
        let (ptr, _) = buffer.memory.device_ptr(&self.stream);
        // SAFETY: `ptr` holds at least `expected` bytes and `bytes` is exactly that long; the
        // stream is synchronised before `bytes` is handed back.
        unsafe { cudarc::driver::result::memcpy_dtoh_async(bytes, ptr, self.stream.cu_stream()) }
            .map_err(|e| driver_error("download", &format!("{expected} bytes"), e))?;
        self.synchronize("download")
    }

    /// Sets `bytes` bytes at device address `ptr` to zero (stream-ordered).
    pub fn zero(&self, kernel: &str, ptr: u64, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        // SAFETY: callers pass an address and size from an `Operand` or a sub-range of one.
        unsafe { cudarc::driver::result::memset_d8_async(ptr, 0, bytes, self.stream.cu_stream()) }
            .map_err(|e| driver_error(kernel, &format!("zeroing {bytes} bytes"), e))
    }

    /// Copies `bytes` bytes between device addresses (stream-ordered; the ranges must not overlap).
    pub fn copy(&self, kernel: &str, dst: u64, src: u64, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        // SAFETY: callers pass addresses and sizes from `Operand`s.
        unsafe { cudarc::driver::result::memcpy_dtod_async(dst, src, bytes, self.stream.cu_stream()) }
            .map_err(|e| driver_error(kernel, &format!("copying {bytes} bytes"), e))
    }

    /// Waits for all issued work; reports an asynchronous kernel failure as `kernel`'s error.
    pub fn synchronize(&self, kernel: &str) -> Result<()> {
        self.stream.synchronize().map_err(|e| driver_error(kernel, "waiting for the device", e))
    }

    /// A temporary device buffer of `len` elements of `dtype`, freed when dropped.
    pub fn scratch(&self, kernel: &str, dtype: DType, len: usize) -> Result<Operand> {
        let bytes = len * dtype.size_in_bytes();
        // SAFETY: scratch content is written by the kernel that uses it before it is read.
        let memory = unsafe { self.stream.alloc::<u8>(bytes.max(1)) }
            .map_err(|e| driver_error(kernel, &format!("a {bytes}-byte scratch buffer"), e))?;
        let buffer = Arc::new(DeviceBuffer { memory, dtype, len });
        let (ptr, _) = buffer.memory.device_ptr(&self.stream);
        Ok(Operand { ptr, dtype, len, _buffer: buffer })
    }

    // ----- kernels -----

    /// The compiled function `kernel`, compiling its module for [`Device::arch`] on first use.
    pub fn function(&self, kernel: Kernel<'_>) -> Result<CudaFunction> {
        let key = format!("{}::{}", kernel.module, kernel.function);
        if let Some(f) = self.functions.lock().get(&key) {
            return Ok(f.clone());
        }
        let module = self.module(kernel.module)?;
        let f = module.load_function(kernel.function).map_err(|e| {
            BackendError::internal(format!(
                "cuda: kernel `{}` is missing from module `{}` ({e:?})",
                kernel.function, kernel.module
            ))
        })?;
        self.functions.lock().insert(key, f.clone());
        Ok(f)
    }

    fn module(&self, name: &'static str) -> Result<Arc<CudaModule>> {
        let mut modules = self.modules.lock();
        if let Some(m) = modules.get(name) {
            return Ok(m.clone());
        }
        let source = kernels::source(name)
            .ok_or_else(|| BackendError::internal(format!("cuda: no kernel source named `{name}`")))?;
        let ptx = kernels::compile_cached(source, &self.arch).map_err(BackendError::internal)?;
        let module = self
            .ctx
            .load_module(ptx)
            .map_err(|e| BackendError::internal(format!("cuda: loading module `{name}` for {}: {e:?}", self.arch)))?;
        modules.insert(name, module.clone());
        Ok(module)
    }

    /// Maps the result of a launch to the backend's error for `kernel`.
    pub fn launched<T>(&self, kernel: Kernel<'_>, result: std::result::Result<T, DriverError>) -> Result<()> {
        result.map(|_| ()).map_err(|e| driver_error(kernel.function, "launching the kernel", e))
    }

    /// Runs `body` with a device error flag set to 0 (the pointer is passed to kernels that
    /// detect bad input, which store a non-zero code in it), waits, and returns the flag.
    pub fn with_error_flag(&self, kernel: &str, body: impl FnOnce(u64) -> Result<()>) -> Result<i32> {
        let mut flag = self.flag.lock();
        self.stream.memset_zeros(&mut *flag).map_err(|e| driver_error(kernel, "clearing the error flag", e))?;
        let (ptr, _) = flag.device_ptr(&self.stream);
        body(ptr)?;
        let mut value = [0i32];
        self.stream.memcpy_dtoh(&*flag, &mut value).map_err(|e| driver_error(kernel, "reading the error flag", e))?;
        Ok(value[0])
    }
}

/// A driver error as a backend error: out-of-memory keeps its kind, the rest are internal.
pub fn driver_error(kernel: &str, doing: &str, e: DriverError) -> BackendError {
    use cudarc::driver::sys::CUresult;
    let kind = if e.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY { ErrorKind::OutOfMemory } else { ErrorKind::Internal };
    let text = e.error_string().ok().and_then(|s| s.to_str().ok().map(str::to_string)).unwrap_or_default();
    BackendError::new(kind, format!("{kernel}: {doing}: CUDA error {:?} {text}", e.0))
}

/// Threads per block of the one-dimensional kernels.
pub const BLOCK: u32 = 256;

/// A one-dimensional launch over `n` items with grid-stride loops (the grid is capped, the
/// kernels loop).
pub fn grid_1d(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1 << 16) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// Launches `kernel` on `device` with `cfg` and the given arguments (each a place of a
/// `DeviceRepr` type: `u64` pointers, `i64` counts, `#[repr(C)]` structs from [`crate::index`]).
#[macro_export]
macro_rules! launch {
    ($device:expr, $kernel:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
        use cudarc::driver::PushKernelArg as _;
        let kernel = $kernel;
        let cfg = $cfg;
        let function = $device.function(kernel)?;
        let mut builder = $device.stream().launch_builder(&function);
        $( builder.arg(&$arg); )*
        // SAFETY: the argument list matches the kernel's signature in its source (each op
        // module keeps the two side by side), and every pointer is a live device buffer of
        // the size the kernel indexes, checked by `Device::operand`.
        let result = unsafe { builder.launch(cfg) };
        $device.launched(kernel, result)
    }};
}
