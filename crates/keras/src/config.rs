//! `keras.json` and the environment: which backend to use, the default float type, epsilon and
//! the image dimension ordering.
//!
//! The file lives in `$KERAS_HOME/keras.json` (`KERAS_HOME` defaults to `~/.keras`), as in
//! Keras. A missing file is written with the defaults on first use; a malformed file or a bad
//! value is an [`Error::Config`] naming the file, the field and the allowed values. Fields this
//! crate does not know are ignored, because Keras itself writes others.
//!
//! ```json
//! {
//!   "backend": "cpu",
//!   "epsilon": 1e-07,
//!   "floatx": "float32",
//!   "image_dim_ordering": "tf"
//! }
//! ```
//!
//! The backend is chosen from, in order: `KERAS_BACKEND` (when set and non-empty), `backend` in
//! `keras.json`, the default `cpu`. [`Config::backend_source`] records which one won.

use std::{
    fmt, fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use keras_backend_api::DType;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Name of the configuration file inside `$KERAS_HOME`.
pub const CONFIG_FILE_NAME: &str = "keras.json";
/// Environment variable naming the Keras home folder (default `~/.keras`).
pub const KERAS_HOME_ENV: &str = "KERAS_HOME";
/// Environment variable that overrides the `backend` field of `keras.json`.
pub const KERAS_BACKEND_ENV: &str = "KERAS_BACKEND";
/// The backend used when neither `KERAS_BACKEND` nor `keras.json` names one.
pub const DEFAULT_BACKEND: &str = "cpu";
/// The default fuzz factor of numeric expressions (`K.epsilon()`).
pub const DEFAULT_EPSILON: f64 = 1e-7;

/// Allowed values of the `backend` field, in words, for error messages.
const BACKEND_ALLOWED: &str = "a backend name (cpu, blas, cuda, ...) or a path to a plugin library";

/// The default float type of new tensors (`K.floatx()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum FloatX {
    /// `float16`.
    Float16,
    /// `float32` (the default).
    #[default]
    Float32,
    /// `float64`.
    Float64,
}

impl FloatX {
    /// Every value, in the order the error messages list them.
    pub const ALL: [FloatX; 3] = [FloatX::Float16, FloatX::Float32, FloatX::Float64];

    /// The name used in `keras.json` and by `K.floatx()`: `float16`, `float32` or `float64`.
    pub const fn name(self) -> &'static str {
        match self {
            FloatX::Float16 => "float16",
            FloatX::Float32 => "float32",
            FloatX::Float64 => "float64",
        }
    }

    /// Parses a `keras.json` name (the inverse of [`FloatX::name`]).
    pub fn from_name(name: &str) -> Option<FloatX> {
        FloatX::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The buffer element type of this float type.
    pub const fn dtype(self) -> DType {
        match self {
            FloatX::Float16 => DType::F16,
            FloatX::Float32 => DType::F32,
            FloatX::Float64 => DType::F64,
        }
    }
}

impl fmt::Display for FloatX {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where image channels go (`K.image_dim_ordering()`): Theano order puts them before the
/// spatial dims, TensorFlow order after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ImageDimOrdering {
    /// `th`: channels first (`channels_first` in later Keras).
    Th,
    /// `tf`: channels last (`channels_last` in later Keras); the default.
    #[default]
    Tf,
}

impl ImageDimOrdering {
    /// Both values, in the order the error messages list them.
    pub const ALL: [ImageDimOrdering; 2] = [ImageDimOrdering::Th, ImageDimOrdering::Tf];

    /// The Keras 1 name: `th` or `tf`.
    pub const fn name(self) -> &'static str {
        match self {
            ImageDimOrdering::Th => "th",
            ImageDimOrdering::Tf => "tf",
        }
    }

    /// The later Keras name (`image_data_format`): `channels_first` or `channels_last`.
    pub const fn data_format(self) -> &'static str {
        match self {
            ImageDimOrdering::Th => "channels_first",
            ImageDimOrdering::Tf => "channels_last",
        }
    }

    /// Parses a Keras 1 name (`th`, `tf`).
    pub fn from_name(name: &str) -> Option<ImageDimOrdering> {
        ImageDimOrdering::ALL.into_iter().find(|o| o.name() == name)
    }

    /// Parses a later Keras name (`channels_first`, `channels_last`).
    pub fn from_data_format(name: &str) -> Option<ImageDimOrdering> {
        ImageDimOrdering::ALL.into_iter().find(|o| o.data_format() == name)
    }
}

impl fmt::Display for ImageDimOrdering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the chosen backend came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendSource {
    /// The `KERAS_BACKEND` environment variable.
    Env,
    /// The `backend` field of this `keras.json`.
    ConfigFile(PathBuf),
    /// Neither named one: the default ([`DEFAULT_BACKEND`]).
    Default,
}

impl fmt::Display for BackendSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendSource::Env => write!(f, "environment variable {KERAS_BACKEND_ENV}"),
            BackendSource::ConfigFile(path) => write!(f, "`backend` in {}", path.display()),
            BackendSource::Default => write!(f, "default (no {KERAS_BACKEND_ENV}, no `backend` in keras.json)"),
        }
    }
}

/// The resolved configuration: `keras.json` with `KERAS_BACKEND` applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The backend to use: a name or a library path ([`crate::registry`] resolves it).
    pub backend: String,
    /// Which of environment, file and default chose [`Config::backend`].
    pub backend_source: BackendSource,
    /// The default float type (`K.floatx()`).
    pub floatx: FloatX,
    /// The fuzz factor (`K.epsilon()`), always finite and greater than 0.
    pub epsilon: f64,
    /// The image dimension ordering (`K.image_dim_ordering()`).
    pub image_dim_ordering: ImageDimOrdering,
    /// The Keras home folder the file was looked for in.
    pub home: PathBuf,
    /// The configuration file (it may not exist when the home folder is not writable).
    pub file: PathBuf,
}

/// The Keras home folder: `$KERAS_HOME` when set and non-empty, else `~/.keras`, else (no home
/// folder known, as in some containers) `.keras` in the temporary folder, as Keras falls back
/// to `/tmp`.
pub fn keras_home() -> PathBuf {
    match std::env::var_os(KERAS_HOME_ENV) {
        Some(home) if !home.is_empty() => PathBuf::from(home),
        _ => dirs::home_dir().unwrap_or_else(std::env::temp_dir).join(".keras"),
    }
}

/// The path of `keras.json` inside `home`.
pub fn config_path(home: &Path) -> PathBuf {
    home.join(CONFIG_FILE_NAME)
}

impl Config {
    /// Loads the configuration from the environment: `$KERAS_HOME/keras.json` and
    /// `KERAS_BACKEND`. See [`Config::load_from`].
    pub fn load() -> Result<Config> {
        let env_backend = std::env::var_os(KERAS_BACKEND_ENV).map(|v| v.to_string_lossy().into_owned());
        Config::load_from(&keras_home(), env_backend.as_deref())
    }

    /// Loads `home/keras.json` and applies `env_backend` (the value of `KERAS_BACKEND`; `None`
    /// or `""` mean unset), without reading the process environment.
    ///
    /// A missing file is written with the defaults (creating `home`); when that fails the
    /// defaults are used and a warning is logged. A file that is not a JSON object, or a known
    /// field with a bad value, is an [`Error::Config`].
    pub fn load_from(home: &Path, env_backend: Option<&str>) -> Result<Config> {
        let file = config_path(home);
        let mut config = match fs::read_to_string(&file) {
            Ok(text) => parse(&file, &text)?,
            Err(e) if is_missing(&e) => {
                if let Err(e) = write_json(&file, &Value::Object(default_fields())) {
                    tracing::warn!("cannot write the default {}: {e}; using the defaults", file.display());
                }
                Config::defaults(home)
            }
            Err(e) => return Err(Error::config(&file, None, format!("cannot read the file: {e}"))),
        };
        config.home = home.to_path_buf();
        config.file = file;
        if let Some(name) = env_backend.filter(|name| !name.is_empty()) {
            config.backend = name.to_string();
            config.backend_source = BackendSource::Env;
        }
        Ok(config)
    }

    /// The default configuration for `home` (what a fresh `keras.json` holds).
    pub fn defaults(home: &Path) -> Config {
        Config {
            backend: DEFAULT_BACKEND.to_string(),
            backend_source: BackendSource::Default,
            floatx: FloatX::default(),
            epsilon: DEFAULT_EPSILON,
            image_dim_ordering: ImageDimOrdering::default(),
            home: home.to_path_buf(),
            file: config_path(home),
        }
    }
}

/// Writes `backend` into `home/keras.json`, keeping every other field as it is (a missing file
/// is created with the defaults). Returns the file's path. The file is replaced atomically, so
/// an interrupted write never leaves half a file; a malformed existing file is an error and is
/// left untouched rather than overwritten.
pub fn set_backend(home: &Path, backend: &str) -> Result<PathBuf> {
    let file = config_path(home);
    let mut fields = match fs::read_to_string(&file) {
        Ok(text) => parse_object(&file, &text)?,
        Err(e) if is_missing(&e) => default_fields(),
        Err(e) => return Err(Error::config(&file, None, format!("cannot read the file: {e}"))),
    };
    fields.insert("backend".to_string(), Value::String(backend.to_string()));
    write_json(&file, &Value::Object(fields))
        .map_err(|e| Error::config(&file, Some("backend"), format!("cannot write the file: {e}")))?;
    Ok(file)
}

/// Whether a read failed because there is no file (rather than an unreadable one): the file
/// is absent, or a path component where the home folder should be is not a folder.
fn is_missing(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

/// The fields of a fresh `keras.json`, in Keras 1 naming.
fn default_fields() -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("backend".into(), Value::from(DEFAULT_BACKEND));
    fields.insert("epsilon".into(), Value::from(DEFAULT_EPSILON));
    fields.insert("floatx".into(), Value::from(FloatX::default().name()));
    fields.insert("image_dim_ordering".into(), Value::from(ImageDimOrdering::default().name()));
    fields
}

/// Creates the parent folder and replaces `file` through a temporary file and a rename.
fn write_json(file: &Path, value: &Value) -> io::Result<()> {
    if let Some(dir) = file.parent() {
        fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    let temporary = file.with_extension(format!("json.tmp{}", std::process::id()));
    let written = fs::File::create(&temporary).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    });
    match written.and_then(|()| fs::rename(&temporary, file)) {
        Ok(()) => Ok(()),
        Err(e) => {
            // Best effort: a leftover temporary file would only confuse the user.
            let _ = fs::remove_file(&temporary);
            Err(e)
        }
    }
}

fn parse_object(file: &Path, text: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(Error::config(
            file,
            None,
            format!(
                "expected a JSON object with the fields backend, floatx, epsilon, image_dim_ordering; found {}",
                kind_of(&other)
            ),
        )),
        Err(e) => Err(Error::config(file, None, format!("not valid JSON: {e}"))),
    }
}

fn parse(file: &Path, text: &str) -> Result<Config> {
    let fields = parse_object(file, text)?;
    let home = file.parent().unwrap_or(Path::new("."));
    let mut config = Config::defaults(home);
    let bad = |field: &str, value: &Value, allowed: &str| {
        Error::config(file, Some(field), format!("field `{field}` is {}; allowed: {allowed}", show(value)))
    };

    if let Some(value) = fields.get("backend") {
        match value.as_str() {
            Some(name) if !name.is_empty() => {
                config.backend = name.to_string();
                config.backend_source = BackendSource::ConfigFile(file.to_path_buf());
            }
            _ => return Err(bad("backend", value, BACKEND_ALLOWED)),
        }
    }

    if let Some(value) = fields.get("floatx") {
        let allowed = FloatX::ALL.map(FloatX::name).join(", ");
        config.floatx = value.as_str().and_then(FloatX::from_name).ok_or_else(|| bad("floatx", value, &allowed))?;
    }

    if let Some(value) = fields.get("epsilon") {
        config.epsilon = value
            .as_f64()
            .filter(|e| e.is_finite() && *e > 0.0)
            .ok_or_else(|| bad("epsilon", value, "a number greater than 0"))?;
    }

    let ordering = match fields.get("image_dim_ordering") {
        Some(value) => Some(value.as_str().and_then(ImageDimOrdering::from_name).ok_or_else(|| {
            bad("image_dim_ordering", value, &ImageDimOrdering::ALL.map(ImageDimOrdering::name).join(", "))
        })?),
        None => None,
    };
    let format = match fields.get("image_data_format") {
        Some(value) => Some(value.as_str().and_then(ImageDimOrdering::from_data_format).ok_or_else(|| {
            bad("image_data_format", value, &ImageDimOrdering::ALL.map(ImageDimOrdering::data_format).join(", "))
        })?),
        None => None,
    };
    config.image_dim_ordering = match (ordering, format) {
        (Some(o), Some(f)) if o != f => {
            return Err(Error::config(
                file,
                Some("image_data_format"),
                format!(
                    "fields `image_dim_ordering` (\"{}\") and `image_data_format` (\"{}\") disagree; \
                     \"{}\" goes with \"{}\": keep one of the two or make them agree",
                    o.name(),
                    f.data_format(),
                    o.name(),
                    o.data_format()
                ),
            ));
        }
        (Some(o), _) | (None, Some(o)) => o,
        (None, None) => ImageDimOrdering::default(),
    };
    Ok(config)
}

/// A JSON value as it appears in the file, cut short so that an error stays one readable line.
fn show(value: &Value) -> String {
    const LIMIT: usize = 60;
    let text = value.to_string();
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home_with(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join(CONFIG_FILE_NAME), text).expect("write keras.json");
        dir
    }

    #[test]
    fn missing_file_is_written_with_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path().join("nested").join(".keras");
        let config = Config::load_from(&home, None).expect("defaults");
        assert_eq!(config, Config::defaults(&home));
        let written: Value =
            serde_json::from_str(&fs::read_to_string(config_path(&home)).expect("written")).expect("json");
        assert_eq!(written["backend"], "cpu");
        assert_eq!(written["floatx"], "float32");
        assert_eq!(written["image_dim_ordering"], "tf");
        assert_eq!(written["epsilon"].as_f64(), Some(1e-7));
    }

    #[test]
    fn unwritable_home_falls_back_to_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A regular file where the home folder should be: creating the folder must fail.
        let blocker = dir.path().join("not-a-dir");
        fs::write(&blocker, "x").expect("write");
        let config = Config::load_from(&blocker.join(".keras"), None).expect("defaults");
        assert_eq!(config.backend, "cpu");
        assert_eq!(config.backend_source, BackendSource::Default);
    }

    #[test]
    fn fields_are_read_and_unknown_ones_ignored() {
        let dir = home_with(
            r#"{"backend": "blas", "floatx": "float64", "epsilon": 0.001, "image_dim_ordering": "th", "other": [1]}"#,
        );
        let config = Config::load_from(dir.path(), None).expect("valid");
        assert_eq!(config.backend, "blas");
        assert_eq!(config.backend_source, BackendSource::ConfigFile(config_path(dir.path())));
        assert_eq!(config.floatx, FloatX::Float64);
        assert_eq!(config.epsilon, 0.001);
        assert_eq!(config.image_dim_ordering, ImageDimOrdering::Th);
    }

    #[test]
    fn image_data_format_is_a_synonym() {
        let dir = home_with(r#"{"image_data_format": "channels_first"}"#);
        let config = Config::load_from(dir.path(), None).expect("valid");
        assert_eq!(config.image_dim_ordering, ImageDimOrdering::Th);
        assert_eq!(config.backend_source, BackendSource::Default);

        let dir = home_with(r#"{"image_data_format": "channels_last", "image_dim_ordering": "tf"}"#);
        assert_eq!(Config::load_from(dir.path(), None).expect("agree").image_dim_ordering, ImageDimOrdering::Tf);

        let dir = home_with(r#"{"image_data_format": "channels_last", "image_dim_ordering": "th"}"#);
        let message = Config::load_from(dir.path(), None).expect_err("disagree").to_string();
        assert!(message.contains("disagree") && message.contains("image_data_format"), "{message}");
    }

    #[test]
    fn bad_values_name_file_field_and_allowed_values() {
        let cases = [
            (r#"{"floatx": "float8"}"#, "field `floatx` is \"float8\"; allowed: float16, float32, float64"),
            (r#"{"epsilon": 0}"#, "field `epsilon` is 0; allowed: a number greater than 0"),
            (r#"{"epsilon": "small"}"#, "field `epsilon` is \"small\"; allowed: a number greater than 0"),
            (r#"{"image_dim_ordering": "xy"}"#, "field `image_dim_ordering` is \"xy\"; allowed: th, tf"),
            (r#"{"backend": 3}"#, "field `backend` is 3; allowed: a backend name"),
            (r#"{"backend": ""}"#, "field `backend` is \"\"; allowed"),
            ("[1, 2]", "expected a JSON object"),
            ("{\"floatx\": ", "not valid JSON"),
        ];
        for (text, expected) in cases {
            let dir = home_with(text);
            let message = Config::load_from(dir.path(), None).expect_err(text).to_string();
            let path = config_path(dir.path()).display().to_string();
            assert!(message.starts_with(&format!("{path}: ")), "{message}");
            assert!(message.contains(expected), "{message} should contain {expected}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn env_beats_file_beats_default_and_empty_env_is_unset() {
        let dir = home_with(r#"{"backend": "blas"}"#);
        let from_env = Config::load_from(dir.path(), Some("cuda")).expect("valid");
        assert_eq!((from_env.backend.as_str(), from_env.backend_source), ("cuda", BackendSource::Env));
        let empty_env = Config::load_from(dir.path(), Some("")).expect("valid");
        assert_eq!(empty_env.backend, "blas");
        let empty = tempfile::tempdir().expect("temp dir");
        let default = Config::load_from(empty.path(), Some("")).expect("valid");
        assert_eq!((default.backend.as_str(), default.backend_source), ("cpu", BackendSource::Default));
    }

    #[test]
    fn set_backend_keeps_other_fields() {
        let dir = home_with(r#"{"backend": "blas", "floatx": "float64", "mine": {"a": 1}}"#);
        set_backend(dir.path(), "cuda").expect("written");
        let written: Value =
            serde_json::from_str(&fs::read_to_string(config_path(dir.path())).expect("read")).expect("json");
        assert_eq!(written["backend"], "cuda");
        assert_eq!(written["floatx"], "float64");
        assert_eq!(written["mine"]["a"], 1);

        let broken = home_with("{oops");
        assert!(set_backend(broken.path(), "cpu").is_err());
        assert_eq!(fs::read_to_string(config_path(broken.path())).expect("read"), "{oops");
    }
}
