//! What a plugin library exports, and the guard that keeps panics on the plugin's side.

use std::{
    ffi::c_char,
    panic::{AssertUnwindSafe, catch_unwind},
};

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    sabi_trait::TD_Opaque,
    sabi_types::VersionStrings,
    std_types::{RBox, RErr, RResult, RSlice, RSliceMut},
};

use crate::{
    ArgReduceOp, Backend, Backend_TO, BackendError, BackendInfo, BackendResult, BinaryOp, BufferId, ConvParams, DType,
    Distribution, Layout, OpKind, PoolParams, ReduceOp, TensorRef, UnaryOp,
};

/// Bytes every plugin declaration starts with.
pub const PLUGIN_MAGIC: [u8; 16] = *b"keras-rs-backend";

/// The exported symbol holding the [`PluginDeclaration`] (nul-terminated, for `dlsym`).
pub const PLUGIN_DECLARATION_SYMBOL: &[u8] = b"keras_backend_plugin_declaration\0";

/// A plain C static every plugin exports under [`PLUGIN_DECLARATION_SYMBOL`].
///
/// The loader reads it before anything else, with nothing but `dlsym`, so a file that is not a
/// keras-rs plugin, or one built for another contract MAJOR, is refused with one clear line
/// before any ABI-dependent code runs. Its layout is frozen forever: never change this struct.
#[repr(C)]
#[derive(Debug)]
pub struct PluginDeclaration {
    /// Always [`PLUGIN_MAGIC`].
    pub magic: [u8; 16],
    /// The [`CONTRACT_MAJOR`](crate::CONTRACT_MAJOR) the plugin was built against.
    pub contract_major: u32,
    /// The [`CONTRACT_MINOR`](crate::CONTRACT_MINOR) the plugin was built against.
    pub contract_minor: u32,
    /// The backend's name, nul-terminated, static.
    pub name: *const c_char,
}

// SAFETY: the declaration is immutable and `name` points to a `'static` string literal.
unsafe impl Sync for PluginDeclaration {}

impl PluginDeclaration {
    /// A declaration for the current contract. `name_with_nul` must end with `\0`
    /// ([`export_backend!`](crate::export_backend) appends it).
    pub const fn new(name_with_nul: &'static str) -> Self {
        let bytes = name_with_nul.as_bytes();
        assert!(!bytes.is_empty() && bytes[bytes.len() - 1] == 0, "plugin name must be nul-terminated");
        PluginDeclaration {
            magic: PLUGIN_MAGIC,
            contract_major: crate::CONTRACT_MAJOR,
            contract_minor: crate::CONTRACT_MINOR,
            name: name_with_nul.as_ptr().cast(),
        }
    }
}

/// A backend as the host holds it: an ABI-stable trait object.
pub type BackendBox = Backend_TO<'static, RBox<()>>;

/// The root module of a plugin, checked by abi_stable for layout compatibility on load.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// Starts the backend (opens the device, reads its properties). Fails with
    /// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) when it cannot run here.
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn() -> BackendResult<BackendBox>,
}

/// The root module's abi_stable version: `CONTRACT_MAJOR.0.0` (checked by a test).
pub(crate) const ROOT_MODULE_VERSION: &str = "1.0.0";

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "keras_backend";
    const NAME: &'static str = "keras_backend";
    /// `MAJOR.0.0`, not the crate version: abi_stable refuses a library whose minor is below
    /// the loader's, which would break the contract's promise that a host loads plugins of an
    /// older minor. Minors are negotiated through [`PluginDeclaration::contract_minor`].
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(ROOT_MODULE_VERSION);
}

/// Runs `body`, turning a panic into an [`ErrorKind::Internal`](crate::ErrorKind::Internal)
/// error that names `what`.
pub fn catch_panic<T>(what: &str, body: impl FnOnce() -> BackendResult<T>) -> BackendResult<T> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(payload) => {
            let detail = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_string());
            RErr(BackendError::internal(format!("{what}: the backend panicked: {detail}")))
        }
    }
}

/// Builds a backend with `constructor`, wraps it so that no panic escapes any method, and
/// erases its type. [`export_backend!`](crate::export_backend) calls this; hosts that link a
/// backend statically (an embedded default) call it too, so both forms behave the same.
pub fn new_guarded_backend<B, F>(constructor: F) -> BackendResult<BackendBox>
where
    B: Backend + 'static,
    F: FnOnce() -> Result<B, BackendError>,
{
    catch_panic("create", || match constructor() {
        Ok(backend) => RResult::ROk(Backend_TO::from_value(Guarded(backend), TD_Opaque)),
        Err(e) => RErr(e),
    })
}

/// Wraps a [`Backend`] so that every method catches unwinds.
struct Guarded<B>(B);

macro_rules! guarded_methods {
    ($( fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> BackendResult<$ret:ty>; )*) => {
        $(
            fn $name(&self $(, $arg: $ty)*) -> BackendResult<$ret> {
                catch_panic(stringify!($name), || self.0.$name($($arg),*))
            }
        )*
    };
}

impl<B: Backend> Backend for Guarded<B> {
    fn supports(&self, op: OpKind, dtype: DType) -> bool {
        catch_unwind(AssertUnwindSafe(|| self.0.supports(op, dtype))).unwrap_or(false)
    }

    fn live_buffers(&self) -> u64 {
        catch_unwind(AssertUnwindSafe(|| self.0.live_buffers())).unwrap_or(0)
    }

    guarded_methods! {
        fn info(&self) -> BackendResult<BackendInfo>;
        fn alloc(&self, dtype: DType, len: usize) -> BackendResult<BufferId>;
        fn free(&self, buffer: BufferId) -> BackendResult<()>;
        fn upload(&self, buffer: BufferId, bytes: RSlice<'_, u8>) -> BackendResult<()>;
        fn download(&self, buffer: BufferId, bytes: RSliceMut<'_, u8>) -> BackendResult<()>;
        fn fill(&self, out: TensorRef<'_>, value: f64) -> BackendResult<()>;
        fn unary(&self, op: UnaryOp, x: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()>;
        fn binary(&self, op: BinaryOp, a: TensorRef<'_>, b: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()>;
        fn select(&self, cond: TensorRef<'_>, on_true: TensorRef<'_>, on_false: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()>;
        fn cast(&self, x: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()>;
        fn reduce(&self, op: ReduceOp, x: TensorRef<'_>, axes: RSlice<'_, usize>, out: TensorRef<'_>) -> BackendResult<()>;
        fn arg_reduce(&self, op: ArgReduceOp, x: TensorRef<'_>, axis: usize, out: TensorRef<'_>) -> BackendResult<()>;
        fn matmul(&self, a: TensorRef<'_>, b: TensorRef<'_>, out: TensorRef<'_>, transpose_a: bool, transpose_b: bool) -> BackendResult<()>;
        fn permute(&self, x: TensorRef<'_>, perm: RSlice<'_, usize>, out: TensorRef<'_>) -> BackendResult<()>;
        fn slice(&self, x: TensorRef<'_>, starts: RSlice<'_, usize>, steps: RSlice<'_, isize>, out: TensorRef<'_>) -> BackendResult<()>;
        fn concat(&self, inputs: RSlice<'_, TensorRef<'_>>, axis: usize, out: TensorRef<'_>) -> BackendResult<()>;
        fn pad(&self, x: TensorRef<'_>, before: RSlice<'_, usize>, after: RSlice<'_, usize>, value: f64, out: TensorRef<'_>) -> BackendResult<()>;
        fn reverse(&self, x: TensorRef<'_>, axes: RSlice<'_, usize>, out: TensorRef<'_>) -> BackendResult<()>;
        fn gather(&self, x: TensorRef<'_>, indices: TensorRef<'_>, axis: usize, out: TensorRef<'_>) -> BackendResult<()>;
        fn scatter_add(&self, updates: TensorRef<'_>, indices: TensorRef<'_>, axis: usize, out: TensorRef<'_>) -> BackendResult<()>;
        fn tile(&self, x: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()>;
        fn repeat(&self, x: TensorRef<'_>, axis: usize, repeats: usize, out: TensorRef<'_>) -> BackendResult<()>;
        fn one_hot(&self, indices: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()>;
        fn conv(&self, x: TensorRef<'_>, kernel: TensorRef<'_>, out: TensorRef<'_>, params: ConvParams<'_>) -> BackendResult<()>;
        fn conv_backward_data(&self, dy: TensorRef<'_>, kernel: TensorRef<'_>, dx: TensorRef<'_>, params: ConvParams<'_>) -> BackendResult<()>;
        fn conv_backward_filter(&self, x: TensorRef<'_>, dy: TensorRef<'_>, dkernel: TensorRef<'_>, params: ConvParams<'_>) -> BackendResult<()>;
        fn pool(&self, x: TensorRef<'_>, out: TensorRef<'_>, params: PoolParams<'_>) -> BackendResult<()>;
        fn pool_backward(&self, x: TensorRef<'_>, dy: TensorRef<'_>, dx: TensorRef<'_>, params: PoolParams<'_>) -> BackendResult<()>;
        fn resize_nearest(&self, x: TensorRef<'_>, out: TensorRef<'_>, layout: Layout) -> BackendResult<()>;
        fn random(&self, dist: Distribution, seed: u64, counter: u64, out: TensorRef<'_>) -> BackendResult<()>;
        fn softmax(&self, x: TensorRef<'_>, axis: usize, log: bool, out: TensorRef<'_>) -> BackendResult<()>;
        fn batch_norm(&self, x: TensorRef<'_>, mean: TensorRef<'_>, var: TensorRef<'_>, beta: TensorRef<'_>, gamma: TensorRef<'_>, epsilon: f64, out: TensorRef<'_>) -> BackendResult<()>;
    }
}

/// Exports a backend from a `cdylib` crate: the [`PluginDeclaration`] symbol and the abi_stable
/// root module.
///
/// `name` is the name users select the backend by (the library file must be
/// `libkeras_backend_<name>.so`); `constructor` is an expression of type
/// `fn() -> Result<B, BackendError>` for your [`Backend`] type `B`. The plugin crate must
/// depend on `abi_stable` directly (the root-module attribute expands to paths into it).
/// Every method of the exported backend catches unwinds, so a panic in a kernel becomes an
/// [`ErrorKind::Internal`](crate::ErrorKind::Internal) error instead of an abort.
///
/// Invoke it once per library, in a thin `cdylib` crate of its own: the exported symbols have
/// fixed names, so a library that linked two exporting crates would not link.
#[macro_export]
macro_rules! export_backend {
    (name: $name:literal, constructor: $constructor:expr $(,)?) => {
        #[unsafe(no_mangle)]
        #[allow(non_upper_case_globals)]
        pub static keras_backend_plugin_declaration: $crate::PluginDeclaration =
            $crate::PluginDeclaration::new(concat!($name, "\0"));

        extern "C" fn __keras_backend_create() -> $crate::BackendResult<$crate::BackendBox> {
            $crate::plugin::new_guarded_backend($constructor)
        }

        #[::abi_stable::export_root_module]
        fn __keras_backend_root_module() -> $crate::PluginModuleRef {
            use ::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::PluginModule { create: __keras_backend_create }.leak_into_prefix()
        }
    };
}
