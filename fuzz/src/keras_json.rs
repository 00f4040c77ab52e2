//! Fuzzing `keras.json` parsing: any bytes in `$KERAS_HOME/keras.json` give a configuration or
//! a one-line [`Error::Config`] naming the file, never a panic; a configuration that loads
//! survives `set_backend` with every other field unchanged; a malformed file is never
//! overwritten.

use std::{cell::RefCell, fs, path::Path};

use keras::{
    Config, Error,
    config::{BackendSource, config_path, set_backend},
};

thread_local! {
    /// One Keras home per thread, reused across inputs (a fresh folder per input would make
    /// the file system the bottleneck).
    static HOME: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
}

/// Writes `data` as `keras.json` in a private Keras home and checks what loading it gives.
pub fn run(data: &[u8]) {
    HOME.with(|home| {
        let mut home = home.borrow_mut();
        let dir = home.get_or_insert_with(|| tempfile::tempdir().expect("a temporary Keras home"));
        check(dir.path(), data);
    });
}

fn check(home: &Path, data: &[u8]) {
    let file = config_path(home);
    fs::write(&file, data).expect("write keras.json");
    let loaded = Config::load_from(home, None);
    match &loaded {
        Ok(config) => {
            assert!(config.epsilon.is_finite() && config.epsilon > 0.0, "epsilon {}", config.epsilon);
            assert!(!config.backend.is_empty());
            assert_eq!(config.file, file);
            match &config.backend_source {
                BackendSource::ConfigFile(path) => assert_eq!(path, &file),
                BackendSource::Default => assert_eq!(config.backend, "cpu"),
                BackendSource::Env => panic!("no KERAS_BACKEND was given"),
            }
        }
        Err(error) => check_error(error, &file),
    }

    // `set_backend` rewrites the file: it must keep every other field, and refuse (leaving the
    // file as it was) exactly when the text is not a JSON object.
    let rewritten = set_backend(home, "fuzz_backend");
    match (&loaded, &rewritten) {
        (Ok(before), Ok(_)) => {
            let after = Config::load_from(home, None).expect("a file that loaded loads after set_backend");
            assert_eq!(after.backend, "fuzz_backend");
            assert_eq!(
                (after.floatx, after.epsilon, after.image_dim_ordering),
                (before.floatx, before.epsilon, before.image_dim_ordering)
            );
        }
        (Ok(_), Err(e)) => panic!("a valid keras.json was refused by set_backend: {e}"),
        (Err(before), Ok(_)) => {
            // A bad value in a field other than `backend` is still there, with the same message.
            if !matches!(before, Error::Config { field: Some(f), .. } if f == "backend") {
                let after = Config::load_from(home, None).expect_err("set_backend cannot repair another field");
                assert_eq!(after.to_string(), before.to_string());
            }
        }
        (Err(_), Err(e)) => {
            check_error(e, &file);
            assert_eq!(fs::read(&file).expect("read keras.json"), data, "a refused file is left untouched");
        }
    }
}

/// A configuration error is one line that starts with the file's path.
fn check_error(error: &Error, file: &Path) {
    let message = error.to_string();
    assert!(matches!(error, Error::Config { path, .. } if path == file), "{error:?}");
    assert!(message.starts_with(&format!("{}: ", file.display())), "{message}");
    assert!(!message.contains('\n'), "not one line: {message:?}");
}
