//! Loading real plugin libraries: side by side, refused with one line when wrong, and a panic
//! inside a plugin reported as an error while the host carries on.

use std::{fs, path::Path};

use keras::{Buffer, LoadFailure, registry};
use keras_backend_api::{DType, ErrorKind, UnaryOp};
use keras_tests::{assert_one_line, null_plugin, plugin};

fn load_path(path: &Path) -> keras::Result<keras::Backend> {
    registry::load(path.to_str().expect("UTF-8 test paths"))
}

/// Allocates, uploads, fills and downloads on `backend`: the operations every backend has.
fn check_answers(backend: &keras::Backend, value: f32) {
    let before = backend.live_buffers();
    {
        let buffer = Buffer::from_slice(backend, &[1.0f32, 2.0, 3.0]).unwrap();
        assert_eq!(buffer.to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0], "{}", backend.name());
        buffer.fill(f64::from(value)).unwrap();
        assert_eq!(buffer.to_vec::<f32>().unwrap(), [value; 3], "{}", backend.name());
        assert_eq!(backend.live_buffers(), before + 1);
    }
    assert_eq!(backend.live_buffers(), before, "{}: the buffer is freed on drop", backend.name());
}

#[test]
fn a_panicking_kernel_is_an_internal_error_and_the_backend_carries_on() {
    let backend = load_path(&plugin("test_panicking")).unwrap();
    assert_eq!(backend.name(), "test_panicking");
    let x = Buffer::from_slice(&backend, &[1.0f32, -2.0]).unwrap();
    let out = Buffer::alloc(&backend, DType::F32, 2).unwrap();
    let shape = [2];

    let error = backend.raw().unary(UnaryOp::Neg, x.view(&shape), out.view(&shape)).into_result().unwrap_err();
    assert_eq!(error.kind, ErrorKind::Internal);
    assert!(error.message.contains("the unary kernel panics on purpose"), "{}", error.message);
    assert!(error.message.contains("unary"), "{}", error.message);

    // The same backend still answers.
    out.upload(&[0u8; 8]).unwrap();
    assert_eq!(x.to_vec::<f32>().unwrap(), [1.0, -2.0]);
    check_answers(&backend, 4.0);
}

#[test]
fn a_plugin_with_another_root_module_layout_is_refused_in_one_line() {
    let path = plugin("test_mismatched");
    let error = load_path(&path).unwrap_err();
    let message = error.to_string();
    assert_eq!(error.load_failure(), Some(LoadFailure::ContractLayout), "{message}");
    assert!(message.contains("layout") && message.contains("contract"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert_one_line(&message);
}

#[test]
fn a_plugin_for_another_contract_major_is_refused_naming_both_versions() {
    let error = load_path(&plugin("test_future")).unwrap_err();
    let message = error.to_string();
    let host = keras_backend_api::CONTRACT_MAJOR;
    assert_eq!(error.load_failure(), Some(LoadFailure::ContractVersion), "{message}");
    assert!(message.contains(&format!("major {}", host + 1)), "{message}");
    assert!(message.contains(&format!("major {host}")), "{message}");
    assert_one_line(&message);
}

#[test]
fn files_that_are_not_libraries_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();

    let junk = dir.path().join(registry::library_file_name("junk"));
    fs::write(&junk, "this is a text file, not a shared library\n").unwrap();
    for error in [load_path(&junk).unwrap_err(), registry::load_in("junk", &[dir.path().to_path_buf()]).unwrap_err()] {
        let message = error.to_string();
        assert_eq!(error.load_failure(), Some(LoadFailure::OpenFailed), "{message}");
        assert!(message.contains(&junk.display().to_string()), "{message}");
        assert_one_line(&message);
    }

    // Cut inside the ELF header, inside the code, and just before the end (the section headers).
    let whole = fs::read(plugin("cpu")).unwrap();
    for (i, cut) in [40, 4096, whole.len() / 8, whole.len() - 1].into_iter().enumerate() {
        let truncated = dir.path().join(format!("truncated{i}")).join(registry::library_file_name("cpu"));
        fs::create_dir(truncated.parent().unwrap()).unwrap();
        fs::write(&truncated, &whole[..cut]).unwrap();
        let error = load_path(&truncated).unwrap_err();
        let message = error.to_string();
        assert_eq!(error.load_failure(), Some(LoadFailure::OpenFailed), "{message}");
        assert!(message.contains(&truncated.display().to_string()), "{message}");
        assert_one_line(&message);
    }

    let missing = dir.path().join("nowhere").join(registry::library_file_name("cpu"));
    let message = load_path(&missing).unwrap_err().to_string();
    assert!(message.contains(&missing.display().to_string()), "{message}");
}

#[test]
fn a_library_without_the_declaration_is_not_a_plugin() {
    // A real shared library that is not a keras-rs plugin: the C library this test process
    // itself runs on, found where the dynamic loader mapped it (no guessed install paths).
    let maps = fs::read_to_string("/proc/self/maps").expect("Linux lists the mapped files of a process");
    let libc = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| Path::new(path).file_name().is_some_and(|name| name.to_string_lossy().starts_with("libc.so")))
        .map(Path::new)
        .expect("the test process maps a libc.so");
    let error = load_path(libc).unwrap_err();
    let message = error.to_string();
    assert_eq!(error.load_failure(), Some(LoadFailure::NotAPlugin), "{message}");
    assert_eq!(
        message,
        format!("not a keras-rs plugin: {} (no keras_backend_plugin_declaration symbol)", libc.display())
    );
}

#[test]
fn different_plugins_answer_side_by_side() {
    let cpu = load_path(&plugin("cpu")).unwrap();
    let null = load_path(&null_plugin()).unwrap();
    let panicking = load_path(&plugin("test_panicking")).unwrap();
    assert_eq!([cpu.name(), null.name(), panicking.name()], ["cpu", "null", "test_panicking"]);
    assert_eq!(null.info().device, "host memory, no kernels");
    assert_eq!(cpu.library_path(), Some(plugin("cpu").as_path()));

    // Interleaved, to show that each call reaches its own library.
    let on_cpu = Buffer::from_slice(&cpu, &[1.0f32]).unwrap();
    let on_null = Buffer::from_slice(&null, &[2.0f32]).unwrap();
    check_answers(&panicking, 3.0);
    check_answers(&null, 5.0);
    check_answers(&cpu, 6.0);
    assert_eq!(on_cpu.to_vec::<f32>().unwrap(), [1.0]);
    assert_eq!(on_null.to_vec::<f32>().unwrap(), [2.0]);
}

#[test]
fn the_same_plugin_loaded_twice_gives_two_independent_backends() {
    let first = load_path(&plugin("cpu")).unwrap();
    let second = load_path(&plugin("cpu")).unwrap();
    let kept = Buffer::from_slice(&first, &[7i64, 8]).unwrap();
    assert_eq!((first.live_buffers(), second.live_buffers()), (1, 0));
    check_answers(&second, 9.0);
    assert_eq!(kept.to_vec::<i64>().unwrap(), [7, 8]);
    drop(first);
    // `kept` holds its backend alive: the handle is shared, not dangling.
    assert_eq!(kept.to_vec::<i64>().unwrap(), [7, 8]);
    assert_eq!(kept.backend().live_buffers(), 1);
}

#[test]
fn a_name_resolves_through_the_search_path_and_unknown_names_say_where_they_looked() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(plugin("test_panicking"), dir.path().join(registry::library_file_name("test_panicking"))).unwrap();
    let search = [dir.path().to_path_buf()];

    let backend = registry::load_in("test_panicking", &search).unwrap();
    assert_eq!(backend.library_path(), Some(dir.path().join(registry::library_file_name("test_panicking")).as_path()));

    let message = registry::load_in("nosuch", &search).unwrap_err().to_string();
    assert!(message.contains(&dir.path().display().to_string()), "{message}");
    assert!(message.contains("test_panicking") && message.contains("cpu"), "{message}");
    assert_one_line(&message);

    let found = registry::discover_in(&search);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].name, "test_panicking");
    assert_eq!((found[1].name.as_str(), found[1].path.as_deref()), ("cpu", None), "the built-in comes last");
}

#[test]
fn the_test_binary_finds_workspace_plugins_by_name() {
    // The test binary lives in target/<profile>/deps; the search path covers its parent.
    plugin("cpu");
    let cpu = registry::load("cpu").unwrap();
    assert!(cpu.library_path().is_some(), "a cpu plugin file on the search path wins over the built-in");
    assert!(registry::discover().iter().any(|f| f.name == "test_panicking"));
}
