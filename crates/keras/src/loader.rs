//! Opening one plugin library: the two-step check of DESIGN.md, then `create`.
//!
//! 1. `libloading` opens the file and reads the plain C [`PluginDeclaration`]: a file that is
//!    not a keras-rs plugin, or one built for another contract MAJOR, is refused here in one
//!    line, before any ABI-dependent code of the plugin runs.
//! 2. abi_stable checks the full type layout of the plugin's root module
//!    ([`PluginModuleRef`]). Its report is long: the whole of it goes to `tracing::debug!`,
//!    the error is one summary line.
//! 3. The root module's `create` starts the backend.
//!
//! Every library is opened on its own, through `lib_header_from_path`, never through
//! `RootModule::load_from_file`, which caches the first library of each root-module type for
//! the whole process and would hand the `cpu` module back when asked for any other plugin.
//!
//! Libraries are never unloaded: the backend trait objects created from a plugin point into its
//! code and vtables, and so may every value the plugin handed out (error messages, panic
//! payload vtables); unloading would turn them into dangling pointers. A process loads a handful
//! of backends, so leaking them costs nothing worth the risk (abi_stable leaks its handle too).

use std::{ffi::CStr, path::Path};

use abi_stable::library::{LibraryError, lib_header_from_path};
use keras_backend_api::{
    BackendBox, CONTRACT_MAJOR, CONTRACT_MINOR, PLUGIN_DECLARATION_SYMBOL, PLUGIN_MAGIC, PluginDeclaration,
    PluginModuleRef,
};

use crate::{
    error::{Error, LoadFailure, Result, one_line},
    registry::ContractVersion,
};

/// What the declaration symbol says about a plugin.
pub(crate) struct Declaration {
    pub(crate) name: String,
    pub(crate) contract: ContractVersion,
}

/// A started plugin backend.
pub(crate) struct Opened {
    pub(crate) declaration: Declaration,
    pub(crate) backend: BackendBox,
}

/// Opens the plugin library at `path` (absolute), checks it and starts its backend.
/// `requested` is the name or path the user asked for, kept in errors.
pub(crate) fn open(path: &Path, requested: &str) -> Result<Opened> {
    let shown = path.display();
    if !path.is_file() {
        return Err(Error::load(LoadFailure::OpenFailed, requested, format!("{shown}: no such plugin library file")));
    }

    // dlopen maps a truncated ELF file without complaint and the process then dies of SIGBUS
    // on the first page past the end, so a short file is refused before dlopen sees it.
    if let Err(why) = elf::check_complete(path) {
        return Err(Error::load(
            LoadFailure::OpenFailed,
            requested,
            format!("{shown}: cannot open as a shared library: {why}"),
        ));
    }

    // Step 1: the declaration, with nothing but dlopen/dlsym.
    // SAFETY: opening a library runs its initialisers. Which library to trust is the user's
    // choice, as with any program they run; a refused library is closed again right away.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| {
        // dlerror's text usually starts with the path too; say it once.
        let detail = e.to_string();
        let detail = detail.strip_prefix(&format!("{shown}: ")).unwrap_or(&detail);
        Error::load(LoadFailure::OpenFailed, requested, format!("{shown}: cannot open as a shared library: {detail}"))
    })?;
    let declaration = read_declaration(&library, path, requested)?;
    // From here on the plugin's code may run: keep it mapped for the life of the process (see
    // the module docs for why it must never be unloaded).
    std::mem::forget(library);

    // Step 2: the full layout check of the root module.
    let header = lib_header_from_path(path).map_err(|e| abi_error(e, path, requested, &declaration))?;
    let module =
        header.init_root_module::<PluginModuleRef>().map_err(|e| abi_error(e, path, requested, &declaration))?;

    // Step 3: start the backend.
    let backend = (module.create())().into_result().map_err(|e| {
        Error::load(
            LoadFailure::StartFailed,
            requested,
            format!("backend `{}` failed to start: {}", declaration.name, e.message),
        )
    })?;
    Ok(Opened { declaration, backend })
}

fn read_declaration(library: &libloading::Library, path: &Path, requested: &str) -> Result<Declaration> {
    let shown = path.display();
    let not_a_plugin =
        |why: &str| Error::load(LoadFailure::NotAPlugin, requested, format!("not a keras-rs plugin: {shown} ({why})"));

    // SAFETY: the symbol is looked up as a pointer to the data (what dlsym returns for a
    // static); it is only dereferenced below after a null check, and the layout of
    // `PluginDeclaration` is frozen by the contract.
    let symbol = unsafe { library.get::<*const PluginDeclaration>(PLUGIN_DECLARATION_SYMBOL) }
        .map_err(|_| not_a_plugin("no keras_backend_plugin_declaration symbol"))?;
    let pointer: *const PluginDeclaration = *symbol;
    if pointer.is_null() {
        return Err(not_a_plugin("keras_backend_plugin_declaration is a null symbol"));
    }
    // SAFETY: non-null and exported under the contract's symbol name; the magic check below
    // refuses files that merely happen to use the name.
    let declaration = unsafe { &*pointer };
    if declaration.magic != PLUGIN_MAGIC {
        return Err(not_a_plugin("keras_backend_plugin_declaration does not start with the keras-rs magic bytes"));
    }
    if declaration.name.is_null() {
        return Err(not_a_plugin("its declaration has no name"));
    }
    // SAFETY: the magic says this is a keras-rs declaration, whose `name` is a static,
    // nul-terminated string (`PluginDeclaration::new` checks the terminator at compile time).
    let name = unsafe { CStr::from_ptr(declaration.name) }.to_string_lossy().into_owned();
    let contract = ContractVersion { major: declaration.contract_major, minor: declaration.contract_minor };
    if contract.major != CONTRACT_MAJOR {
        return Err(Error::load(
            LoadFailure::ContractVersion,
            requested,
            format!(
                "{shown}: plugin `{name}` was built for backend contract {contract} (major {}), this host speaks \
                 contract {CONTRACT_MAJOR}.{CONTRACT_MINOR} (major {CONTRACT_MAJOR}); rebuild it against \
                 keras-backend-api {CONTRACT_MAJOR}.x",
                contract.major
            ),
        ));
    }
    Ok(Declaration { name, contract })
}

/// Turns an abi_stable error (often a many-line report) into one line; the full report goes to
/// the debug log.
fn abi_error(error: LibraryError, path: &Path, requested: &str, declaration: &Declaration) -> Error {
    let shown = path.display();
    let name = &declaration.name;
    tracing::debug!("abi_stable refused plugin `{name}` at {shown}:\n{error}");
    let hint = "run with RUST_LOG=debug for the full report";
    let (kind, message) = match &error {
        LibraryError::AbiInstability(_) | LibraryError::Many(_) => (
            LoadFailure::ContractLayout,
            format!(
                "{shown}: contract layout mismatch (plugin `{name}` was built against an incompatible \
                 keras-backend-api{}); {hint}",
                report_conclusion(&error.to_string()).map(|c| format!(": {c}")).unwrap_or_default()
            ),
        ),
        LibraryError::IncompatibleVersionNumber { expected_version, actual_version, .. } => (
            LoadFailure::ContractVersion,
            format!(
                "{shown}: plugin `{name}`'s root module is version {actual_version}, this host needs a version \
                 compatible with {expected_version}"
            ),
        ),
        LibraryError::InvalidAbiHeader(_) | LibraryError::InvalidCAbi { .. } => (
            LoadFailure::ContractLayout,
            format!("{shown}: plugin `{name}` was built with an incompatible abi_stable; {hint}"),
        ),
        LibraryError::GetSymbolError { .. } => (
            LoadFailure::NotAPlugin,
            format!("not a keras-rs plugin: {shown} (it has a declaration but no abi_stable root module)"),
        ),
        LibraryError::OpenError { err, .. } => {
            (LoadFailure::OpenFailed, format!("{shown}: cannot open as a shared library: {err}"))
        }
        _ => (
            LoadFailure::ContractLayout,
            format!("{shown}: abi_stable refused plugin `{name}`: {}", one_line(&error.to_string())),
        ),
    };
    Error::load(kind, requested, message)
}

/// The conclusion of an abi_stable layout report: its last `Error:` section (what differs, and
/// the expected and found values), on one short line. `None` when the report has no such
/// section. The report itself is hundreds of lines of type layouts; this is the part a user
/// can act on.
fn report_conclusion(report: &str) -> Option<String> {
    const LIMIT: usize = 200;
    let (_, last) = report.rsplit_once("Error:")?;
    let mut lines = last.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut conclusion = lines.next()?.to_string();
    for line in lines {
        match line {
            "Expected:" => conclusion.push_str("; expected"),
            "Found:" => conclusion.push_str(", found"),
            value => {
                conclusion.push(' ');
                conclusion.push_str(value);
            }
        }
    }
    if let Some((cut, _)) = conclusion.char_indices().nth(LIMIT) {
        conclusion.truncate(cut);
        conclusion.push_str("...");
    }
    Some(conclusion)
}

/// A size check of ELF files (Linux and the other ELF platforms): every byte range the headers
/// point to must lie inside the file.
mod elf {
    use std::{
        fs::File,
        io::{Read, Seek, SeekFrom},
        path::Path,
    };

    /// `Err` with a one-line reason when `path` is an ELF file shorter than its headers say.
    /// Anything that is not ELF passes: dlopen then refuses it with its own message.
    pub(super) fn check_complete(path: &Path) -> Result<(), String> {
        let mut file = File::open(path).map_err(|e| e.to_string())?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut header = Vec::with_capacity(64);
        file.by_ref().take(64).read_to_end(&mut header).map_err(|e| e.to_string())?;
        if header.len() < 6 || header[..4] != *b"\x7fELF" {
            return Ok(());
        }
        let is_64 = header[4] == 2;
        let little = header[5] != 2;
        let field = |bytes: &[u8], at: usize, size: usize| -> Option<u64> {
            let raw = bytes.get(at..at + size)?;
            let mut value = 0u64;
            for i in 0..size {
                let byte = if little { raw[size - 1 - i] } else { raw[i] };
                value = (value << 8) | u64::from(byte);
            }
            Some(value)
        };
        let truncated = |needed: u64| {
            format!("truncated or damaged: the file has {len} bytes but its ELF headers describe {needed}")
        };
        let header_len: u64 = if is_64 { 64 } else { 52 };
        if (header.len() as u64) < header_len {
            return Err(truncated(header_len));
        }
        // (e_phoff, e_shoff, e_phentsize, e_phnum, e_shentsize, e_shnum) offsets and widths.
        let word = if is_64 { 8 } else { 4 };
        let (phoff_at, shoff_at, sizes_at) = if is_64 { (0x20, 0x28, 0x36) } else { (0x1C, 0x20, 0x2A) };
        let damaged = || "damaged: its ELF header does not parse".to_string();
        let phoff = field(&header, phoff_at, word).ok_or_else(damaged)?;
        let shoff = field(&header, shoff_at, word).ok_or_else(damaged)?;
        let phentsize = field(&header, sizes_at, 2).ok_or_else(damaged)?;
        let phnum = field(&header, sizes_at + 2, 2).ok_or_else(damaged)?;
        let shentsize = field(&header, sizes_at + 4, 2).ok_or_else(damaged)?;
        let shnum = field(&header, sizes_at + 6, 2).ok_or_else(damaged)?;

        let end = |offset: u64, count: u64, size: u64| count.checked_mul(size).and_then(|n| n.checked_add(offset));
        let program_headers_end = end(phoff, phnum, phentsize).ok_or_else(damaged)?;
        // shnum 0 with a non-zero offset means "extended numbering": at least one entry exists.
        let section_headers_end =
            if shoff == 0 { 0 } else { end(shoff, shnum.max(1), shentsize).ok_or_else(damaged)? };
        let mut needed = header_len.max(program_headers_end).max(section_headers_end);
        if program_headers_end <= len {
            let mut table = vec![0u8; usize::try_from(program_headers_end - phoff).map_err(|_| damaged())?];
            file.seek(SeekFrom::Start(phoff)).map_err(|e| e.to_string())?;
            file.read_exact(&mut table).map_err(|e| e.to_string())?;
            let entry_size = usize::try_from(phentsize).map_err(|_| damaged())?;
            const PT_LOAD: u64 = 1;
            // (p_offset, p_filesz) offsets in a program header.
            let (offset_at, filesz_at) = if is_64 { (8, 32) } else { (4, 16) };
            for entry in table.chunks_exact(entry_size.max(1)) {
                if field(entry, 0, 4) == Some(PT_LOAD) {
                    let offset = field(entry, offset_at, word).ok_or_else(damaged)?;
                    let filesz = field(entry, filesz_at, word).ok_or_else(damaged)?;
                    needed = needed.max(offset.checked_add(filesz).ok_or_else(damaged)?);
                }
            }
        }
        if needed > len { Err(truncated(needed)) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::report_conclusion;

    #[test]
    fn the_conclusion_of_a_layout_report_fits_on_one_line() {
        let report =
            "\n  lots of layout\n\nError:mismatched package\nExpected:\n    keras-backend-api\nFound:\n    other\n\n";
        assert_eq!(
            report_conclusion(report).as_deref(),
            Some("mismatched package; expected keras-backend-api, found other")
        );
        assert_eq!(report_conclusion("no conclusion here"), None);
    }
}
