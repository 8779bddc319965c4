use std::fmt;
use std::path::PathBuf;

/// A problem with one field of the config, named by its path (`providers.openai.keys[0].weight`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path from the document root.
    pub path: String,
    /// What is wrong and, where it helps, how to fix it.
    pub reason: String,
}

impl FieldError {
    pub(crate) fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "(root): {}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The document is not well-formed JSON/YAML.
    #[error("config {origin} is not valid {format}: {message}")]
    Syntax {
        /// File path or other origin.
        origin: String,
        /// `JSON` or `YAML`.
        format: &'static str,
        /// The parser's message, with line and column.
        message: String,
    },
    /// Fields have the wrong type or an invalid value; every problem is listed, and the
    /// warnings a valid config would have had (unknown fields) after them.
    #[error(
        "config {origin} is invalid:\n{}{}",
        list(problems),
        warnings_after(warnings)
    )]
    Invalid {
        /// File path or other origin.
        origin: String,
        /// Every problem found.
        problems: Vec<FieldError>,
        /// What is worth a warning besides (`unknown field X is ignored`).
        warnings: Vec<String>,
    },
}

fn warnings_after(warnings: &[String]) -> String {
    warnings
        .iter()
        .map(|warning| format!("\nwarning: {warning}"))
        .collect()
}

fn list(problems: &[FieldError]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}
