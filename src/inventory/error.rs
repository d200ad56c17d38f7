//! Errors in the user's inventory, each pointing at the file, line and column and saying
//! what to change.

use std::ops::Range;

use miette::{Diagnostic, NamedSource, Severity, SourceSpan};
use thiserror::Error;

/// Why an inventory cannot be used. Every variant names the file; those about a value also
/// carry the source and the span, so the report shows the offending text.
#[derive(Debug, Error, Diagnostic)]
pub enum InventoryError {
    #[error("cannot read inventory {path}: {source}")]
    #[diagnostic(help("check the path; `synprov check --help` shows an example inventory"))]
    Read {
        path: String,
        source: std::io::Error,
    },

    #[error("inventory {path} is not a regular file")]
    #[diagnostic(help(
        "give the path of a TOML file; to read a generated inventory, write it to a file first"
    ))]
    NotAFile { path: String },

    #[error("inventory {path} is larger than {limit} bytes")]
    #[diagnostic(help(
        "an inventory of thousands of hosts fits in a few MiB: is this the right file?"
    ))]
    TooLarge { path: String, limit: u64 },

    /// Boxed: it carries the whole source text, and results pass it around.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Located(Box<Located>),
}

/// A problem at a place in the inventory: the message, the text it is about, and the fix.
#[derive(Debug, Error, Diagnostic)]
#[error("{location}: {message}")]
pub struct Located {
    location: String,
    message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("{label}")]
    span: SourceSpan,
    label: String,
    #[help]
    help: Option<String>,
}

/// A value that is valid but dangerous, located like an error; shown, never fatal.
#[derive(Debug, Error)]
#[error("warning: {0}")]
pub struct InventoryWarning(Located);

impl Diagnostic for InventoryWarning {
    fn severity(&self) -> Option<Severity> {
        Some(Severity::Warning)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.0.help()
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.0.source_code()
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.0.labels()
    }
}

/// The inventory's text and name, so that errors can be located in it.
#[derive(Debug)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    /// An error about the text at `span`: the message, a short label under the text, and
    /// the fix.
    pub fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
        help: impl Into<String>,
    ) -> InventoryError {
        InventoryError::Located(Box::new(self.located(span, message, label, help)))
    }

    /// A warning about the text at `span`, shaped like [`Source::error`].
    pub fn warning(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
        help: impl Into<String>,
    ) -> InventoryWarning {
        InventoryWarning(self.located(span, message, label, help))
    }

    fn located(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
        help: impl Into<String>,
    ) -> Located {
        let start = span.start.min(self.text.len());
        let end = span.end.clamp(start, self.text.len());
        let (line, column) = self.line_column(start);
        let help = help.into();
        Located {
            location: format!("{}:{line}:{column}", self.name),
            message: message.into(),
            src: NamedSource::new(&self.name, self.text.clone()),
            span: (start..end).into(),
            label: label.into(),
            help: (!help.is_empty()).then_some(help),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// The span of a table header such as `[hosts.web1]`, or of a dotted key naming it, for
    /// errors about a whole table; falls back to the start of the file.
    pub fn table_span(&self, table: &str, name: &str) -> Range<usize> {
        let candidates = [
            format!("[{table}.{name}]"),
            format!("[{table}.\"{name}\"]"),
            format!("{table}.{name}"),
        ];
        candidates
            .iter()
            .find_map(|needle| self.text.find(needle.as_str()).map(|i| i..i + needle.len()))
            .unwrap_or(0..0)
    }
}

/// A "did you mean" for a misspelt key, from serde's list of expected names.
pub fn did_you_mean(unknown: &str, expected: &[&str]) -> Option<String> {
    expected
        .iter()
        .map(|candidate| (strsim::jaro_winkler(unknown, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let source = Source {
            name: "x.toml".into(),
            text: "a = 1\nbé = 2\n".into(),
        };
        assert_eq!(source.line_column(0), (1, 1));
        assert_eq!(source.line_column(6), (2, 1));
        assert_eq!(source.line_column(9), (2, 3));
    }

    #[test]
    fn a_close_misspelling_gets_a_suggestion_and_a_far_one_does_not() {
        assert_eq!(
            did_you_mean("adress", &["address", "port"]).as_deref(),
            Some("address")
        );
        assert_eq!(did_you_mean("zzz", &["address", "port"]), None);
    }
}
