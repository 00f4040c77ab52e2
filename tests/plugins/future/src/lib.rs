//! Test plugin `test_future`: a library that declares the next contract MAJOR and exports
//! nothing else. The loader must refuse it from the declaration alone, naming both versions,
//! without looking for a root module.

use keras_backend_api::{CONTRACT_MAJOR, PLUGIN_MAGIC, PluginDeclaration};

/// Written by hand (not `PluginDeclaration::new`, which always states the current contract).
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static keras_backend_plugin_declaration: PluginDeclaration = PluginDeclaration {
    magic: PLUGIN_MAGIC,
    contract_major: CONTRACT_MAJOR + 1,
    // The first release of that major.
    contract_minor: 0,
    name: c"test_future".as_ptr(),
};
