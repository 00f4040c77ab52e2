//! `keras.json` and `KERAS_BACKEND`: which source wins, and what a bad file says.

use std::fs;

use keras::{BackendSource, Config, config};

#[test]
fn env_beats_keras_json_beats_default() {
    let home = tempfile::tempdir().unwrap();
    let file = config::config_path(home.path());
    fs::write(&file, r#"{"backend": "from_file", "floatx": "float64", "something_else": true}"#).unwrap();

    let from_env = Config::load_from(home.path(), Some("from_env")).unwrap();
    assert_eq!(from_env.backend, "from_env");
    assert_eq!(from_env.backend_source, BackendSource::Env);
    assert_eq!(from_env.floatx, config::FloatX::Float64, "the rest still comes from the file");

    let from_file = Config::load_from(home.path(), None).unwrap();
    assert_eq!(from_file.backend, "from_file");
    assert_eq!(from_file.backend_source, BackendSource::ConfigFile(file.clone()));

    fs::write(&file, r#"{"floatx": "float32"}"#).unwrap();
    let default = Config::load_from(home.path(), None).unwrap();
    assert_eq!(default.backend, "cpu");
    assert_eq!(default.backend_source, BackendSource::Default);
}

#[test]
fn empty_keras_backend_counts_as_unset() {
    let home = tempfile::tempdir().unwrap();
    fs::write(config::config_path(home.path()), r#"{"backend": "from_file"}"#).unwrap();
    let config = Config::load_from(home.path(), Some("")).unwrap();
    assert_eq!(config.backend, "from_file");
    assert!(matches!(config.backend_source, BackendSource::ConfigFile(_)));
}

#[test]
fn missing_keras_json_is_created_with_defaults() {
    let home = tempfile::tempdir().unwrap();
    let nested = home.path().join("fresh");
    let config = Config::load_from(&nested, None).unwrap();
    assert_eq!((config.backend.as_str(), config.epsilon), ("cpu", 1e-7));
    let written: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(config::config_path(&nested)).unwrap()).unwrap();
    assert_eq!(written["backend"], "cpu");
    assert_eq!(written["image_dim_ordering"], "tf");
}

#[test]
fn malformed_keras_json_names_the_file_and_the_field() {
    let home = tempfile::tempdir().unwrap();
    let file = config::config_path(home.path());

    fs::write(&file, r#"{"floatx": "float8"}"#).unwrap();
    let message = Config::load_from(home.path(), None).unwrap_err().to_string();
    assert_eq!(
        message,
        format!("{}: field `floatx` is \"float8\"; allowed: float16, float32, float64", file.display())
    );

    fs::write(&file, "{\"backend\": \"cpu\",").unwrap();
    let message = Config::load_from(home.path(), None).unwrap_err().to_string();
    assert!(message.starts_with(&format!("{}: not valid JSON", file.display())), "{message}");
    keras_tests::assert_one_line(&message);

    fs::write(&file, r#"{"image_dim_ordering": "th", "image_data_format": "channels_last"}"#).unwrap();
    let error = Config::load_from(home.path(), None).unwrap_err();
    assert!(matches!(&error, keras::Error::Config { field: Some(f), .. } if f == "image_data_format"), "{error}");
}
