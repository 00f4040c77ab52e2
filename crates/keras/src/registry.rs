//! Finding, loading and holding backends.
//!
//! A backend is selected by a **name** (`cpu`, `blas`, `cuda`, or a third party's) or by a
//! **path** to a plugin library. A value is a path when it contains `/` or ends with the
//! platform's library suffix (`.so`); anything else is a name.
//!
//! A name `N` is the library file `libkeras_backend_N.so` (platform naming), looked up in the
//! folders of [`search_path`], in order:
//!
//! 1. each folder of `KERAS_BACKEND_PATH` (separated by `:`),
//! 2. the folder of the running executable, and its parent (which covers cargo's
//!    `target/<profile>/deps`, where test binaries live),
//! 3. `$KERAS_HOME/backends`.
//!
//! `cpu` also names the **built-in** backend (the `backend-cpu` kernels linked into this crate
//! by the default `embedded-cpu` feature, started through the same guarded interface as a
//! plugin); it is used when no `libkeras_backend_cpu.so` is found on the search path, so a
//! program works with no plugin file at all.
//!
//! Every [`load`] opens its library independently, so one process can hold several backends,
//! and even two independent instances of the same plugin, side by side. [`active`] is the
//! process-wide backend chosen by the [`Config`] (`keras.json` and
//! `KERAS_BACKEND`), loaded once.

use std::{
    collections::HashSet,
    env::consts::{DLL_PREFIX, DLL_SUFFIX},
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use keras_backend_api::{BackendBox, DType};

use crate::{
    config::{self, BackendSource, Config},
    error::{Error, LoadFailure, Result},
    loader,
};

/// Environment variable listing extra folders (`:`-separated) to look for plugin libraries in.
pub const KERAS_BACKEND_PATH_ENV: &str = "KERAS_BACKEND_PATH";
/// The name of the built-in backend.
pub const BUILTIN_BACKEND: &str = "cpu";
/// The part of a plugin's file name between the platform prefix and the backend name.
const FILE_STEM_PREFIX: &str = "keras_backend_";

/// A backend contract version, `MAJOR.MINOR` (see `keras_backend_api`'s crate docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContractVersion {
    /// Must equal the host's [`keras_backend_api::CONTRACT_MAJOR`] for a plugin to load.
    pub major: u32,
    /// Additions the plugin implements; newer than the host's is fine.
    pub minor: u32,
}

impl ContractVersion {
    /// The contract this host implements.
    pub const HOST: ContractVersion =
        ContractVersion { major: keras_backend_api::CONTRACT_MAJOR, minor: keras_backend_api::CONTRACT_MINOR };
}

impl fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// What a backend says about itself, as plain Rust values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// The name the backend is selected by.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The device in words (CPU model and threads, GPU name and memory).
    pub device: String,
    /// Worker threads the backend uses (0 if not meaningful).
    pub threads: u32,
    /// The element types buffers may hold.
    pub dtypes: Vec<DType>,
}

impl From<keras_backend_api::BackendInfo> for BackendInfo {
    fn from(info: keras_backend_api::BackendInfo) -> Self {
        BackendInfo {
            name: info.name.into_string(),
            version: info.version.into_string(),
            device: info.device.into_string(),
            threads: info.threads,
            dtypes: info.dtypes.into_vec(),
        }
    }
}

/// A loaded, started backend. Cloning is cheap (a reference count); the backend stops when the
/// last clone (including those held by [`Buffer`](crate::Buffer)s) is dropped.
#[derive(Clone)]
pub struct Backend {
    inner: Arc<Loaded>,
}

struct Loaded {
    raw: BackendBox,
    name: String,
    info: BackendInfo,
    library_path: Option<PathBuf>,
    source: Option<BackendSource>,
    contract: ContractVersion,
}

impl Backend {
    /// The backend's name, as its plugin declares it (`cpu` for the built-in backend).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// What the backend said about itself when it started.
    pub fn info(&self) -> &BackendInfo {
        &self.inner.info
    }

    /// The plugin library it was loaded from; `None` for the built-in backend.
    pub fn library_path(&self) -> Option<&Path> {
        self.inner.library_path.as_deref()
    }

    /// Where the choice of this backend came from, for the backend returned by [`active`] or
    /// [`load_configured`]; `None` for one loaded explicitly with [`load`].
    pub fn source(&self) -> Option<&BackendSource> {
        self.inner.source.as_ref()
    }

    /// The contract version the plugin was built against.
    pub fn contract_version(&self) -> ContractVersion {
        self.inner.contract
    }

    /// Buffers allocated on this backend and not yet freed (for leak checks).
    pub fn live_buffers(&self) -> u64 {
        self.inner.raw.live_buffers()
    }

    /// The contract trait object, for the executor that calls kernels directly.
    pub fn raw(&self) -> &BackendBox {
        &self.inner.raw
    }

    /// Whether `other` is this very instance (a clone of it), not merely one of the same name:
    /// buffer handles are only meaningful to the instance that allocated them.
    pub fn is_same_instance(&self, other: &Backend) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The backend's name and where it came from, for messages: `cpu (built-in)`,
    /// `cpu (/path/libkeras_backend_cpu.so)`.
    pub(crate) fn describe(&self) -> String {
        match self.library_path() {
            Some(path) => format!("`{}` ({})", self.name(), path.display()),
            None => format!("`{}` (built-in)", self.name()),
        }
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.inner.name)
            .field("library_path", &self.inner.library_path)
            .field("source", &self.inner.source)
            .field("contract", &self.inner.contract)
            .finish_non_exhaustive()
    }
}

/// A backend found by [`discover`]: a plugin file on the search path, or the built-in one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The name it is selected by (from the file name; the plugin's declaration may differ).
    pub name: String,
    /// The library file; `None` for the built-in backend.
    pub path: Option<PathBuf>,
}

impl Found {
    /// Loads this backend (a fresh, independent instance).
    pub fn load(&self) -> Result<Backend> {
        match &self.path {
            Some(path) => load_file(path, &path.display().to_string(), None),
            None => load_builtin(&self.name, None),
        }
    }
}

/// The process-wide backend chosen by [`Config::load`]: loaded on first use, then the same
/// handle for the life of the process. A failure is not cached, so a later call tries again.
pub fn active() -> Result<Backend> {
    static ACTIVE: OnceLock<Backend> = OnceLock::new();
    if let Some(backend) = ACTIVE.get() {
        return Ok(backend.clone());
    }
    let backend = load_configured(&Config::load()?)?;
    // Two threads may race to here; the first one's backend wins and the other is dropped.
    Ok(ACTIVE.get_or_init(|| backend).clone())
}

/// Loads the backend `config` names, remembering where the choice came from
/// ([`Backend::source`]); searches [`search_path_for`] with `config.home`. Not cached.
pub fn load_configured(config: &Config) -> Result<Backend> {
    let dirs = search_path_for(&config.home);
    load_from_search_path(&config.backend, &dirs, Some(config.backend_source.clone()))
}

/// Loads a backend by name or library path, searching [`search_path`]. Every call opens and
/// starts a new, independent instance; nothing is cached.
pub fn load(name_or_path: &str) -> Result<Backend> {
    load_in(name_or_path, &search_path())
}

/// Like [`load`], with an explicit list of folders to look names up in (in order).
pub fn load_in(name_or_path: &str, search_path: &[PathBuf]) -> Result<Backend> {
    load_from_search_path(name_or_path, search_path, None)
}

/// The folders a backend name is looked up in, in order: `KERAS_BACKEND_PATH`, the running
/// executable's folder and its parent, `$KERAS_HOME/backends`.
pub fn search_path() -> Vec<PathBuf> {
    search_path_for(&config::keras_home())
}

/// [`search_path`] with `keras_home` in place of `$KERAS_HOME`.
pub fn search_path_for(keras_home: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(list) = std::env::var_os(KERAS_BACKEND_PATH_ENV) {
        dirs.extend(std::env::split_paths(&list).filter(|d| !d.as_os_str().is_empty()));
    }
    match std::env::current_exe() {
        Ok(exe) => {
            if let Some(dir) = exe.parent() {
                dirs.push(dir.to_path_buf());
                if let Some(parent) = dir.parent() {
                    dirs.push(parent.to_path_buf());
                }
            }
        }
        Err(e) => tracing::warn!("cannot find the running executable ({e}); its folder is not searched for backends"),
    }
    dirs.push(keras_home.join("backends"));
    let mut seen = HashSet::new();
    dirs.retain(|d| seen.insert(d.canonicalize().unwrap_or_else(|_| d.clone())));
    dirs
}

/// Every backend that can be selected: each plugin file on [`search_path`] (in search order;
/// a name found twice is listed twice, and the first one wins), then the built-in `cpu`.
pub fn discover() -> Vec<Found> {
    discover_in(&search_path())
}

/// [`discover`] over an explicit list of folders.
pub fn discover_in(search_path: &[PathBuf]) -> Vec<Found> {
    let mut found: Vec<Found> =
        scan(search_path).into_iter().map(|(name, path)| Found { name, path: Some(path) }).collect();
    if cfg!(feature = "embedded-cpu") {
        found.push(Found { name: BUILTIN_BACKEND.to_string(), path: None });
    }
    found
}

/// The library file name of backend `name` on this platform: `libkeras_backend_<name>.so`.
pub fn library_file_name(name: &str) -> String {
    format!("{DLL_PREFIX}{FILE_STEM_PREFIX}{name}{DLL_SUFFIX}")
}

/// Whether a backend value is a library path rather than a name: it contains `/` or ends with
/// the platform's library suffix.
pub fn is_path(value: &str) -> bool {
    value.contains('/') || value.contains(std::path::MAIN_SEPARATOR) || value.ends_with(DLL_SUFFIX)
}

fn load_from_search_path(value: &str, dirs: &[PathBuf], source: Option<BackendSource>) -> Result<Backend> {
    if is_path(value) {
        // Absolute, so that dlopen never searches its own path for a bare file name and the
        // handle reports a path that works from any folder.
        let path = std::path::absolute(value).unwrap_or_else(|_| PathBuf::from(value));
        return load_file(&path, value, source);
    }
    check_name(value)?;
    let file_name = library_file_name(value);
    if let Some(path) = dirs.iter().map(|d| d.join(&file_name)).find(|p| p.is_file()) {
        return load_file(&path, value, source);
    }
    if value == BUILTIN_BACKEND && cfg!(feature = "embedded-cpu") {
        return load_builtin(value, source);
    }
    Err(not_found(value, &file_name, dirs))
}

fn check_name(value: &str) -> Result<()> {
    let valid = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(Error::load(
            LoadFailure::NotFound,
            value,
            format!(
                "invalid backend name {value:?}: a name has letters, digits, `_` and `-` only; \
                 a library path contains `/` or ends with `{DLL_SUFFIX}`"
            ),
        ))
    }
}

fn not_found(name: &str, file_name: &str, dirs: &[PathBuf]) -> Error {
    let searched = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    let mut names: Vec<String> = scan(dirs).into_iter().map(|(name, _)| name).collect();
    names.sort();
    names.dedup();
    let found = if names.is_empty() { "none".to_string() } else { names.join(", ") };
    let builtin = if cfg!(feature = "embedded-cpu") { BUILTIN_BACKEND } else { "none" };
    Error::load(
        LoadFailure::NotFound,
        name,
        format!(
            "unknown backend `{name}`: no {file_name} in [{searched}]; found there: {found}; built-in: {builtin}; \
             add the plugin's folder to {KERAS_BACKEND_PATH_ENV} or give its library path"
        ),
    )
}

/// Plugin files in `dirs`: `(name, path)`, in folder order, sorted by name within a folder,
/// each file once even when two folders are the same.
fn scan(dirs: &[PathBuf]) -> Vec<(String, PathBuf)> {
    let prefix = format!("{DLL_PREFIX}{FILE_STEM_PREFIX}");
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    for dir in dirs {
        // A folder that does not exist or cannot be read simply holds no plugins.
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut in_dir: Vec<(String, PathBuf)> = entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let file_name = entry.file_name().into_string().ok()?;
                let name = file_name.strip_prefix(&prefix)?.strip_suffix(DLL_SUFFIX)?;
                let path = entry.path();
                (!name.is_empty() && path.is_file()).then(|| (name.to_string(), path))
            })
            .collect();
        in_dir.sort();
        for (name, path) in in_dir {
            if seen.insert(path.canonicalize().unwrap_or_else(|_| path.clone())) {
                found.push((name, path));
            }
        }
    }
    found
}

fn load_file(path: &Path, requested: &str, source: Option<BackendSource>) -> Result<Backend> {
    let opened = loader::open(path, requested)?;
    let name = opened.declaration.name;
    if !is_path(requested) && requested != name {
        tracing::warn!("{} was selected as `{requested}` but declares itself `{name}`", path.display());
    }
    tracing::debug!("loaded backend `{name}` from {}", path.display());
    finish(opened.backend, name, Some(path.to_path_buf()), source, opened.declaration.contract)
}

#[cfg(feature = "embedded-cpu")]
fn load_builtin(requested: &str, source: Option<BackendSource>) -> Result<Backend> {
    // Built through the same guard as an exported plugin, so that a panic in a built-in kernel
    // is an error value too and both forms behave alike.
    let raw =
        keras_backend_api::plugin::new_guarded_backend(backend_cpu::CpuBackend::new).into_result().map_err(|e| {
            Error::load(LoadFailure::StartFailed, requested, format!("built-in backend `cpu` failed to start: {e}"))
        })?;
    finish(raw, BUILTIN_BACKEND.to_string(), None, source, ContractVersion::HOST)
}

#[cfg(not(feature = "embedded-cpu"))]
fn load_builtin(requested: &str, _source: Option<BackendSource>) -> Result<Backend> {
    Err(Error::load(
        LoadFailure::NotFound,
        requested,
        "this build of keras has no built-in backend (feature `embedded-cpu` is off)",
    ))
}

/// A fresh built-in backend that declares `contract` instead of the host's: how the executor
/// treats plugins of other minors, tested without building one.
#[cfg(all(test, feature = "embedded-cpu"))]
pub(crate) fn builtin_declaring(contract: ContractVersion) -> Result<Backend> {
    let backend = load_builtin(BUILTIN_BACKEND, None)?;
    let inner = Arc::into_inner(backend.inner).expect("a fresh backend has one holder");
    Ok(Backend { inner: Arc::new(Loaded { contract, ..inner }) })
}

fn finish(
    raw: BackendBox,
    name: String,
    library_path: Option<PathBuf>,
    source: Option<BackendSource>,
    contract: ContractVersion,
) -> Result<Backend> {
    let info = raw.info().into_result().map_err(|e| {
        Error::load(LoadFailure::StartFailed, &name, format!("backend `{name}` started but `info` failed: {e}"))
    })?;
    let inner = Loaded { raw, name, info: info.into(), library_path, source, contract };
    Ok(Backend { inner: Arc::new(inner) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_cross_threads() {
        assert_send_sync::<Backend>();
    }

    #[test]
    fn names_and_paths_are_told_apart() {
        assert!(!is_path("cpu"));
        assert!(!is_path("my-backend_2"));
        assert!(is_path("./libx.so"));
        assert!(is_path("/abs/libkeras_backend_cpu.so"));
        assert!(is_path(&format!("libkeras_backend_cpu{DLL_SUFFIX}")));
        assert_eq!(library_file_name("cpu"), format!("{DLL_PREFIX}keras_backend_cpu{DLL_SUFFIX}"));
    }

    #[cfg(feature = "embedded-cpu")]
    #[test]
    fn cpu_falls_back_to_the_builtin() {
        let empty = tempfile::tempdir().expect("temp dir");
        let backend = load_in("cpu", &[empty.path().to_path_buf()]).expect("built-in cpu");
        assert_eq!(backend.name(), "cpu");
        assert_eq!(backend.library_path(), None);
        assert_eq!(backend.contract_version(), ContractVersion::HOST);
        assert!(backend.info().dtypes.contains(&DType::F32));
    }

    #[test]
    fn unknown_names_list_folders_and_found_backends() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(library_file_name("other")), b"not a library").expect("write");
        let error = load_in("nosuch", &[dir.path().to_path_buf()]).expect_err("unknown");
        let message = error.to_string();
        assert_eq!(error.load_failure(), Some(LoadFailure::NotFound));
        assert!(message.contains(&dir.path().display().to_string()), "{message}");
        assert!(message.contains("other"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "a b", "x.y"] {
            assert_eq!(load_in(bad, &[]).expect_err(bad).load_failure(), Some(LoadFailure::NotFound));
        }
    }
}
