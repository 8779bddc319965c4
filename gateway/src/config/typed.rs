//! From a JSON document to typed config, reporting every type error at once: serde stops at the
//! first wrong value, so each failure's value is taken out of the document (its default then
//! applies) and the document is read again, until it reads or nothing more can be taken out.
//!
//! Paths in errors always name the original document: where an array element had to be taken
//! out, later indices in that array are mapped back.

use std::collections::BTreeMap;

use serde_json::Value;
use serde_path_to_error::Segment;

use super::{FieldError, GatewayConfig};

/// More type errors than this in one document are not worth listing one by one.
const MAX_TYPE_ERRORS: usize = 100;

/// One step from a value to a child.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// What reading the document gave.
#[derive(Debug, Default)]
pub struct Typed {
    /// The config, when the document read (after taking out wrong values, if any).
    pub config: Option<GatewayConfig>,
    /// Every type error, by original path.
    pub problems: Vec<FieldError>,
    /// Unknown fields (serde_ignored's paths) seen in the last reading.
    pub unknown_fields: Vec<String>,
    /// Original paths of the values taken out; checks on what is at or under them see defaults,
    /// not the user's values.
    pub removed: Vec<String>,
    /// Arrays that lost elements (by original path), with the original indices taken out,
    /// sorted: indices in them no longer match the document, so checks on them are not
    /// reported.
    pub shifted: BTreeMap<String, Vec<usize>>,
}

impl Typed {
    /// Whether a problem at `path` concerns a value that was taken out (at, under or above it).
    pub fn touches_removed(&self, path: &str) -> bool {
        self.removed
            .iter()
            .any(|removed| within(path, removed) || within(removed, path))
            || self.shifted.keys().any(|array| within(path, array))
    }
}

/// Read `document` as a [`GatewayConfig`], collecting every type error.
pub fn read(mut document: Value) -> Typed {
    let mut typed = Typed::default();
    loop {
        typed.unknown_fields.clear();
        let result = {
            let unknown = &mut typed.unknown_fields;
            let mut on_ignored = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
            let ignored = serde_ignored::Deserializer::new(&document, &mut on_ignored);
            serde_path_to_error::deserialize::<_, GatewayConfig>(ignored)
        };
        let error = match result {
            Ok(config) => {
                typed.config = Some(config);
                return typed;
            }
            Err(error) => error,
        };
        let (steps, original, element) = locate(&document, error.path(), &typed.shifted);
        let message = error.inner().to_string();
        // A value above one already taken out now fails only because of that (a struct missing
        // a required field, say): take it out too, without a second report.
        let consequence = typed
            .removed
            .iter()
            .any(|removed| within(removed, &original) && *removed != original);
        if !consequence {
            typed
                .problems
                .push(FieldError::new(original.clone(), message));
        }
        if steps.is_empty() || typed.problems.len() >= MAX_TYPE_ERRORS {
            return typed;
        }
        if let Some((array, index)) = element {
            let taken = typed.shifted.entry(array).or_default();
            let at = taken.partition_point(|&gone| gone < index);
            taken.insert(at, index);
        }
        typed.removed.push(original);
        if !take_out(&mut document, &steps) {
            return typed;
        }
    }
}

/// The steps (in the document as it is now) to the deepest value the error's path reaches, that
/// value's path in the original document and, when it is an array element, the array's
/// original path and the element's original index.
fn locate(
    document: &Value,
    path: &serde_path_to_error::Path,
    taken: &BTreeMap<String, Vec<usize>>,
) -> (Vec<Step>, String, Option<(String, usize)>) {
    let mut steps = Vec::new();
    let mut original = String::new();
    let mut element = None;
    let mut node = document;
    for segment in path.iter() {
        match (segment, node) {
            (Segment::Map { key }, Value::Object(fields)) if fields.contains_key(key) => {
                if !original.is_empty() {
                    original.push('.');
                }
                original.push_str(key);
                node = &fields[key];
                steps.push(Step::Key(key.clone()));
                element = None;
            }
            (Segment::Seq { index }, Value::Array(items)) if *index < items.len() => {
                let index_now = *index;
                // Sorted: each element taken out at or before it moved it down by one.
                let index = taken.get(&original).map_or(index_now, |gone| {
                    gone.iter()
                        .fold(index_now, |index, &gone| index + usize::from(gone <= index))
                });
                element = Some((original.clone(), index));
                original.push_str(&format!("[{index}]"));
                node = &items[index_now];
                steps.push(Step::Index(index_now));
            }
            // Enum variants and untagged/flattened parts: the value found so far is the one.
            _ => break,
        }
    }
    (steps, original, element)
}

/// Take out the value at `steps`; whether there was one.
fn take_out(document: &mut Value, steps: &[Step]) -> bool {
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut node = document;
    for step in parents {
        node = match (step, node) {
            (Step::Key(key), Value::Object(fields)) => match fields.get_mut(key) {
                Some(child) => child,
                None => return false,
            },
            (Step::Index(index), Value::Array(items)) => match items.get_mut(*index) {
                Some(child) => child,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Step::Key(key), Value::Object(fields)) => fields.remove(key).is_some(),
        (Step::Index(index), Value::Array(items)) if *index < items.len() => {
            items.remove(*index);
            true
        }
        _ => false,
    }
}

/// Whether `path` is `ancestor` or below it (`a.b` is within `a`, `a[0]` too; `ab` is not).
pub(super) fn within(path: &str, ancestor: &str) -> bool {
    ancestor.is_empty()
        || path == ancestor
        || path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(document: &str) -> Vec<String> {
        let document = serde_json::from_str(document).expect("test JSON");
        read(document)
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn every_type_error_is_reported_with_its_original_path() {
        let found = problems(
            r#"{"client": {"initial_pool_size": "many", "max_request_body_size_mb": -1},
                "providers": {"openai": {"keys": [{"value": "k", "weight": "heavy"},
                                                  {"value": "k2", "models": "gpt"}]}},
                "server": {"drain_timeout_seconds": true}}"#,
        );
        for path in [
            "client.initial_pool_size:",
            "client.max_request_body_size_mb:",
            "providers.openai.keys[0].weight:",
            "providers.openai.keys[1].models:",
            "server.drain_timeout_seconds:",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(path)),
                "{path} missing from {found:?}"
            );
        }
        assert_eq!(found.len(), 5, "one report per wrong value: {found:?}");
    }

    #[test]
    fn indices_after_a_removed_element_name_the_original_element() {
        let found = problems(
            r#"{"providers": {"openai": {"keys": [{"value": "k", "models": ["a", 1, "b", 2]}]}}}"#,
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("providers.openai.keys[0].models[1]:"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("providers.openai.keys[0].models[3]:"),
            "{found:?}"
        );
    }

    #[test]
    fn a_missing_field_after_a_removal_is_not_reported_twice() {
        // `value` is required: taking out the wrong one must not add "missing field value".
        let typed = read(
            serde_json::from_str(r#"{"providers": {"openai": {"keys": [{"value": 7}]}}}"#)
                .expect("test JSON"),
        );
        assert_eq!(typed.problems.len(), 1, "{:?}", typed.problems);
        assert!(typed.touches_removed("providers.openai.keys[0]"));
        assert!(!typed.touches_removed("client.initial_pool_size"));
    }

    #[test]
    fn within_compares_whole_segments() {
        assert!(within("a.b", "a"));
        assert!(within("a[0].b", "a"));
        assert!(within("a", "a"));
        assert!(!within("ab", "a"));
        assert!(within("anything", ""));
    }
}
