//! Test plugin `test_mismatched`: a plugin "built against a changed contract".
//!
//! Its [`PluginDeclaration`] is correct (magic, contract MAJOR), so it passes the loader's first
//! step; but its abi_stable root module has a different layout from keras-backend-api's
//! `PluginModule` (`create` takes an argument), under the same root-module name and version.
//! The host's layout check must refuse it with a one-line reason, and never call into it.

use abi_stable::{
    StableAbi, declare_root_module_statics, export_root_module, library::RootModule, prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings,
};
use keras_backend_api::{BackendBox, BackendResult, PluginDeclaration};

/// The plain declaration: correct in every respect.
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static keras_backend_plugin_declaration: PluginDeclaration = PluginDeclaration::new("test_mismatched\0");

/// A root module like keras-backend-api 1.0.0's, except for the signature of `create`.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// Takes a device index: the "changed contract".
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(device: u32) -> BackendResult<BackendBox>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    // Same names and version as the real contract, so that only the layout check can tell.
    const BASE_NAME: &'static str = "keras_backend";
    const NAME: &'static str = "keras_backend";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("1.0.0");
}

extern "C" fn create(device: u32) -> BackendResult<BackendBox> {
    keras_backend_api::plugin::new_guarded_backend(|| {
        let _ = device;
        backend_cpu::CpuBackend::new()
    })
}

#[export_root_module]
fn root_module() -> PluginModuleRef {
    PluginModule { create }.leak_into_prefix()
}
