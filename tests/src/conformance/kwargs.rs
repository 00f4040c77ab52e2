//! Typed access to a case's `kwargs`: every key read is marked, and [`Kwargs::finish`] refuses
//! the ones nobody read, so an argument the runner does not understand is a failure with a
//! clear reason rather than silently ignored.

use std::{cell::RefCell, collections::BTreeSet};

use keras::backend::{Axes, DType, ImageDimOrdering};
use serde_json::{Map, Value};

/// The keyword arguments of one call of `function`.
pub struct Kwargs<'a> {
    function: &'a str,
    map: &'a Map<String, Value>,
    used: RefCell<BTreeSet<&'a str>>,
}

type Parsed<T> = Result<T, String>;

impl<'a> Kwargs<'a> {
    /// Wraps the `kwargs` object of a case of `function`.
    pub fn new(function: &'a str, map: &'a Map<String, Value>) -> Kwargs<'a> {
        Kwargs { function, map, used: RefCell::new(BTreeSet::new()) }
    }

    /// The value of `key`, `None` when absent or JSON `null` (Python's `None`); marks it read.
    pub fn get(&self, key: &'a str) -> Option<&'a Value> {
        self.used.borrow_mut().insert(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn bad(&self, key: &str, want: &str) -> String {
        format!("K.{}: keyword argument `{key}` = {} is not {want}", self.function, self.map[key])
    }

    fn required<T>(&self, key: &'a str, value: Option<T>) -> Parsed<T> {
        value.ok_or_else(|| format!("K.{}: the case gives no `{key}`, which has no default", self.function))
    }

    /// An integer, `None` when absent or null.
    pub fn opt_int(&self, key: &'a str) -> Parsed<Option<i64>> {
        self.get(key).map(|v| v.as_i64().ok_or_else(|| self.bad(key, "an integer"))).transpose()
    }

    /// An integer, `default` when absent (`None`: required).
    pub fn int(&self, key: &'a str, default: Option<i64>) -> Parsed<i64> {
        let value = self.opt_int(key)?;
        self.required(key, value.or(default))
    }

    /// A non-negative integer, `default` when absent.
    pub fn usize(&self, key: &'a str, default: Option<usize>) -> Parsed<usize> {
        let value = self.int(key, default.map(|d| d as i64))?;
        usize::try_from(value).map_err(|_| self.bad(key, "a non-negative integer"))
    }

    /// A number (integers accepted), `None` when absent or null.
    pub fn opt_float(&self, key: &'a str) -> Parsed<Option<f64>> {
        self.get(key).map(|v| v.as_f64().ok_or_else(|| self.bad(key, "a number"))).transpose()
    }

    /// A number, `default` when absent.
    pub fn float(&self, key: &'a str, default: Option<f64>) -> Parsed<f64> {
        let value = self.opt_float(key)?;
        self.required(key, value.or(default))
    }

    /// A boolean, `default` when absent.
    pub fn bool(&self, key: &'a str, default: bool) -> Parsed<bool> {
        self.get(key).map_or(Ok(default), |v| v.as_bool().ok_or_else(|| self.bad(key, "a boolean")))
    }

    /// A string, `default` when absent.
    pub fn str(&self, key: &'a str, default: Option<&'a str>) -> Parsed<&'a str> {
        let value = self.get(key).map(|v| v.as_str().ok_or_else(|| self.bad(key, "a string"))).transpose()?;
        self.required(key, value.or(default))
    }

    /// A list of integers (a JSON list standing for a Python tuple), or one integer as a
    /// one-element list; `None` when absent.
    pub fn ints(&self, key: &'a str) -> Parsed<Option<Vec<i64>>> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let list = match value {
            Value::Number(n) => vec![n.as_i64().ok_or_else(|| self.bad(key, "an integer"))?],
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_i64().ok_or_else(|| self.bad(key, "a list of integers")))
                .collect::<Parsed<_>>()?,
            _ => return Err(self.bad(key, "an integer or a list of integers")),
        };
        Ok(Some(list))
    }

    /// A list of non-negative integers; `default` when absent.
    pub fn usizes(&self, key: &'a str, default: Option<&[usize]>) -> Parsed<Vec<usize>> {
        let value = match self.ints(key)? {
            Some(list) => Some(
                list.into_iter()
                    .map(|n| usize::try_from(n).map_err(|_| self.bad(key, "a list of non-negative integers")))
                    .collect::<Parsed<Vec<usize>>>()?,
            ),
            None => default.map(<[usize]>::to_vec),
        };
        self.required(key, value)
    }

    /// Exactly `N` non-negative integers (a Keras tuple such as `padding=(1, 2)`).
    pub fn tuple<const N: usize>(&self, key: &'a str, default: [usize; N]) -> Parsed<[usize; N]> {
        let list = self.usizes(key, Some(&default))?;
        list.try_into().map_err(|_| self.bad(key, &format!("a list of {N} non-negative integers")))
    }

    /// Reduction axes: an int, a list, or absent/null for every axis.
    pub fn axes(&self, key: &'a str) -> Parsed<Axes> {
        Ok(self.ints(key)?.map_or(Axes::All, |list| Axes::Some(list.into_iter().map(|a| a as isize).collect())))
    }

    /// `dim_ordering`: `th`, `tf`, or `default`/absent (`None`: Keras's configured ordering).
    pub fn dim_ordering(&self) -> Parsed<Option<ImageDimOrdering>> {
        match self.str("dim_ordering", Some("default"))? {
            "th" => Ok(Some(ImageDimOrdering::Th)),
            "tf" => Ok(Some(ImageDimOrdering::Tf)),
            "default" => Ok(None),
            _ => Err(self.bad("dim_ordering", "`th`, `tf` or `default`")),
        }
    }

    /// A dtype name (`float32`, `int32`, ...); `None` when absent or null.
    pub fn dtype(&self, key: &'a str) -> Parsed<Option<DType>> {
        let Some(value) = self.get(key) else { return Ok(None) };
        value.as_str().and_then(DType::from_name).map(Some).ok_or_else(|| self.bad(key, "a dtype name"))
    }

    /// Reads a key whose value the runner accepts but does not need (a shape hint that Keras
    /// itself only uses for checking, such as `image_shape`).
    pub fn hint(&self, key: &'a str) {
        self.get(key);
    }

    /// Fails when the case gives a keyword argument that was never read.
    pub fn finish(&self) -> Parsed<()> {
        let used = self.used.borrow();
        let unknown: Vec<String> =
            self.map.iter().filter(|(k, _)| !used.contains(k.as_str())).map(|(k, v)| format!("`{k}` = {v}")).collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!("K.{}: the runner does not know keyword argument {}", self.function, unknown.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn reads_typed_values_and_defaults() {
        let m = map(json!({"axis": [0, 2], "keepdims": true, "a": 3, "max_value": null, "dim_ordering": "th"}));
        let kw = Kwargs::new("sum", &m);
        assert_eq!(kw.axes("axis").unwrap(), Axes::Some(vec![0, 2]));
        assert!(kw.bool("keepdims", false).unwrap());
        assert_eq!(kw.float("a", None).unwrap(), 3.0);
        assert_eq!(kw.opt_float("max_value").unwrap(), None);
        assert_eq!(kw.dim_ordering().unwrap(), Some(ImageDimOrdering::Th));
        assert_eq!(kw.int("missing", Some(-1)).unwrap(), -1);
        assert!(kw.int("absent", None).unwrap_err().contains("no default"));
        kw.finish().unwrap();
    }

    #[test]
    fn an_unread_keyword_is_an_error_naming_it() {
        let m = map(json!({"axis": 1, "mystery": "x"}));
        let kw = Kwargs::new("argmax", &m);
        kw.int("axis", None).unwrap();
        let error = kw.finish().unwrap_err();
        assert!(error.contains("K.argmax") && error.contains("`mystery`"), "{error}");
    }

    #[test]
    fn a_wrong_type_names_the_key_and_value() {
        let m = map(json!({"axis": "one", "padding": [1, 2, 3]}));
        let kw = Kwargs::new("squeeze", &m);
        assert!(kw.int("axis", None).unwrap_err().contains("`axis` = \"one\""));
        assert!(kw.tuple::<2>("padding", [1, 1]).unwrap_err().contains("list of 2"));
    }
}
