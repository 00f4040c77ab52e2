//! `manifest.jsonl` (README section 2) and case folders: which engine's output is the reference
//! for each case (TensorFlow; Theano where TensorFlow failed, section 7).

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::{Map, Value};

/// The engine whose outputs are the reference (README "Reference semantics").
pub const PRIMARY_ENGINE: &str = "tensorflow";

/// How an input tensor is made (README section 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Kind {
    /// A placeholder fed the array.
    #[serde(rename = "ph")]
    Placeholder,
    /// A variable initialised with the array.
    #[serde(rename = "var")]
    Variable,
}

/// One input of a case: its file, kind, static shape and dtype name.
#[derive(Clone, Debug, Deserialize)]
pub struct InputSpec {
    /// File name inside the engine folder.
    pub file: String,
    /// Placeholder or variable.
    pub kind: Kind,
    /// Static shape.
    pub shape: Vec<usize>,
    /// `float32` or `int32`.
    pub dtype: String,
}

/// One expected output of a case.
#[derive(Clone, Debug, Deserialize)]
pub struct OutputSpec {
    /// Index path (`out`, `0`, `0.1`, `call1.0`).
    pub label: String,
    /// File name inside the engine folder.
    pub file: String,
    /// Shape (`[]` for 0-d).
    pub shape: Vec<usize>,
    /// Dtype name.
    pub dtype: String,
}

/// One case line of `manifest.jsonl`.
#[derive(Clone, Debug, Deserialize)]
pub struct Record {
    /// Unique case name, also the file prefix.
    pub case: String,
    /// The `K.<function>` under test.
    pub function: String,
    /// Input names in positional order.
    #[serde(default)]
    pub args: Vec<String>,
    /// Keyword arguments as recorded.
    #[serde(default)]
    pub kwargs: Map<String, Value>,
    /// One entry per name of `args` (except `function_updates`).
    #[serde(default)]
    pub inputs: BTreeMap<String, InputSpec>,
    /// Outputs in return order; empty for an error record.
    #[serde(default)]
    pub outputs: Vec<OutputSpec>,
    /// `ok` or `error`.
    pub status: String,
    /// `ExceptionType: message` of an error record.
    #[serde(default)]
    pub error: Option<String>,
    /// Free text: what the case probes.
    #[serde(default)]
    pub note: Option<String>,
    /// Whether the outputs come from a section 4 recipe.
    #[serde(default)]
    pub custom_call: bool,
}

impl Record {
    /// Whether the engine produced outputs for this case.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// The `_meta` line (README section 6).
#[derive(Clone, Debug, Deserialize)]
pub struct Meta {
    /// `tensorflow` or `theano`.
    #[serde(default)]
    pub backend: Option<String>,
    /// Keras's fuzz factor used by the engine.
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// Keras's `floatx`.
    #[serde(default)]
    pub floatx: Option<String>,
    /// Static-shape and dtype queries and their answers.
    #[serde(default)]
    pub probes: Map<String, Value>,
}

/// One engine folder: its records in file order and its `_meta` line.
#[derive(Clone, Debug)]
pub struct EngineFolder {
    /// The folder.
    pub dir: PathBuf,
    /// Its name (`tensorflow`, `theano`, or the folder name).
    pub name: String,
    /// The case records, in file order.
    pub records: Vec<Record>,
    /// The `_meta` line, when present.
    pub meta: Option<Meta>,
}

/// Reads `dir/manifest.jsonl`; the error names the file and line.
pub fn read_engine(dir: &Path) -> Result<EngineFolder, String> {
    let path = dir.join("manifest.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut records, mut meta) = (Vec::new(), None);
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{} line {}", path.display(), n + 1);
        let value: Value = serde_json::from_str(line).map_err(|e| format!("{}: {e}", at()))?;
        if value.get("case").and_then(Value::as_str) == Some("_meta") {
            meta = Some(serde_json::from_value(value).map_err(|e| format!("{}: _meta: {e}", at()))?);
        } else {
            records.push(serde_json::from_value(value).map_err(|e| format!("{}: {e}", at()))?);
        }
    }
    let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
    Ok(EngineFolder { dir: dir.to_path_buf(), name, records, meta })
}

/// A case to run: the reference record and the folder its files are in.
#[derive(Clone, Debug)]
pub struct Case {
    /// The reference engine's record.
    pub record: Record,
    /// The folder holding the record's input and output files.
    pub dir: PathBuf,
    /// The engine whose output is the reference.
    pub reference: String,
    /// Why the case cannot be judged (every engine failed), when it cannot.
    pub skip: Option<String>,
}

impl Case {
    /// The case name.
    pub fn name(&self) -> &str {
        &self.record.case
    }

    /// The K function the case is about.
    pub fn function(&self) -> &str {
        &self.record.function
    }
}

/// Every case of a case folder, with its reference resolved.
#[derive(Clone, Debug)]
pub struct CaseSet {
    /// The folder given.
    pub root: PathBuf,
    /// The engines read, reference engine first.
    pub engines: Vec<String>,
    /// The cases in manifest order.
    pub cases: Vec<Case>,
    /// The reference engine's `_meta` line.
    pub meta: Option<Meta>,
}

/// Reads a case folder: either one engine folder (it holds `manifest.jsonl`) or a folder of
/// engine folders, of which `tensorflow` is the reference and the others are fallbacks for the
/// cases it failed on (README section 7).
pub fn load_cases(dir: &Path) -> Result<CaseSet, String> {
    let mut engines = if dir.join("manifest.jsonl").is_file() {
        vec![read_engine(dir)?]
    } else {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut subdirs: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("manifest.jsonl").is_file()).collect();
        subdirs.sort();
        subdirs.iter().map(|d| read_engine(d)).collect::<Result<Vec<_>, _>>()?
    };
    if engines.is_empty() {
        return Err(format!("{}: no manifest.jsonl here nor in any sub-folder", dir.display()));
    }
    // Reference first, then the fallbacks in name order.
    engines.sort_by_key(|e| (e.name != PRIMARY_ENGINE, e.name.clone()));
    let index: Vec<HashMap<&str, &Record>> =
        engines.iter().map(|e| e.records.iter().map(|r| (r.case.as_str(), r)).collect()).collect();
    let mut names: Vec<&str> = Vec::new();
    for engine in &engines {
        for record in &engine.records {
            if !names.contains(&record.case.as_str()) {
                names.push(&record.case);
            }
        }
    }
    let cases = names.iter().map(|name| resolve(name, &engines, &index)).collect();
    Ok(CaseSet {
        root: dir.to_path_buf(),
        engines: engines.iter().map(|e| e.name.clone()).collect(),
        cases,
        meta: engines[0].meta.clone(),
    })
}

/// The first engine (reference order) with an ok record; else a skipped case naming each error.
fn resolve(name: &str, engines: &[EngineFolder], index: &[HashMap<&str, &Record>]) -> Case {
    let found: Vec<(&EngineFolder, &Record)> =
        engines.iter().zip(index).filter_map(|(e, map)| map.get(name).map(|r| (e, *r))).collect();
    if let Some((engine, record)) = found.iter().find(|(_, r)| r.is_ok()) {
        return Case { record: (*record).clone(), dir: engine.dir.clone(), reference: engine.name.clone(), skip: None };
    }
    let (engine, record) = found[0];
    let errors: Vec<String> =
        found.iter().map(|(e, r)| format!("{}: {}", e.name, r.error.as_deref().unwrap_or(&r.status))).collect();
    let skip = format!("no reference output: the case failed on every engine ({})", errors.join("; "));
    Case { record: record.clone(), dir: engine.dir.clone(), reference: engine.name.clone(), skip: Some(skip) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_cases_take_theano_only_where_tensorflow_failed() {
        let set = load_cases(&Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/keras1")).unwrap();
        assert_eq!(set.engines, ["tensorflow", "theano"]);
        assert_eq!(set.cases.len(), 447);
        let from_theano: Vec<&str> = set.cases.iter().filter(|c| c.reference == "theano").map(|c| c.name()).collect();
        assert_eq!(
            from_theano,
            ["dot_1d_2d", "batch_dot_2d_3d_axes_1_2", "conv2d_th_x7_k3_s1_full", "switch_elementwise"]
        );
        assert!(set.cases.iter().all(|c| c.skip.is_none()));
        let meta = set.meta.unwrap();
        assert_eq!(meta.probes["count_params"], 12);
    }

    #[test]
    fn a_single_engine_folder_skips_its_error_cases() {
        let set = load_cases(&Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/keras1/theano")).unwrap();
        assert_eq!(set.engines, ["theano"]);
        let skipped: Vec<&Case> = set.cases.iter().filter(|c| c.skip.is_some()).collect();
        assert_eq!(skipped.len(), 16);
        assert!(skipped[0].skip.as_ref().unwrap().contains("theano: "));
    }
}
