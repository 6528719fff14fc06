//! [`ConfigError`]: what is wrong with a config file, and where.

use std::fmt;
use std::path::PathBuf;

/// The formats a config file can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// TOML (`.toml`).
    Toml,
    /// YAML (`.yaml`, `.yml`).
    Yaml,
    /// JSON (`.json`).
    Json,
}

impl Format {
    /// The format of a file named `path`, by its extension.
    pub fn of_path(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Toml => "TOML",
            Format::Yaml => "YAML",
            Format::Json => "JSON",
        })
    }
}

/// Why a config could not be loaded or built: the message, and where the format tells,
/// the file, the rule and the field it is about, and the line and column.
///
/// Its `Display` reads `clerk.toml:12:9: rule "sign_in", field quota: quota period: …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(Box<Details>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Details {
    path: Option<PathBuf>,
    rule: Option<String>,
    field: Option<String>,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConfigError(Box::new(Details {
            path: None,
            rule: None,
            field: None,
            line: None,
            column: None,
            message: message.into(),
        }))
    }

    pub(crate) fn rule(mut self, rule: &str) -> Self {
        self.0.rule = Some(rule.to_owned());
        self
    }

    pub(crate) fn field(mut self, field: impl Into<String>) -> Self {
        self.0.field = Some(field.into());
        self
    }

    pub(crate) fn at(mut self, line: usize, column: usize) -> Self {
        self.0.line = Some(line);
        self.0.column = Some(column);
        self
    }

    pub(crate) fn in_file(mut self, path: PathBuf) -> Self {
        self.0.path = Some(path);
        self
    }

    /// The name of the rule the error is about (or `rule #N`, counted from 1, when the
    /// rule has no readable name).
    pub fn rule_name(&self) -> Option<&str> {
        self.0.rule.as_deref()
    }

    /// The field, as a path inside the rule (`quota`, `key.peer_ip.ipv6_prefix`) or, for
    /// a setting of the layer, inside the file (`store.redis.timeout`).
    pub fn field_name(&self) -> Option<&str> {
        self.0.field.as_deref()
    }

    /// The line (from 1), where the format gives it.
    pub fn line(&self) -> Option<usize> {
        self.0.line
    }

    /// The column (from 1), where the format gives it.
    pub fn column(&self) -> Option<usize> {
        self.0.column
    }

    /// What is wrong, without the location.
    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut located = false;
        if let Some(path) = &self.0.path {
            write!(f, "{}", path.display())?;
            located = true;
        }
        if let (Some(line), Some(column)) = (self.0.line, self.0.column) {
            if located {
                f.write_str(":")?;
            }
            write!(f, "{line}:{column}")?;
            located = true;
        }
        if located {
            f.write_str(": ")?;
        }
        match (&self.0.rule, &self.0.field) {
            (Some(rule), Some(field)) => write!(f, "rule {rule:?}, field {field}: ")?,
            (Some(rule), None) => write!(f, "rule {rule:?}: ")?,
            (None, Some(field)) => write!(f, "field {field}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for ConfigError {}

/// Line and column (from 1) of byte `offset` in `text` (columns in characters).
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns() {
        let text = "a = 1\nbé = x\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 11), (2, 5));
        assert_eq!(line_column(text, 999), (3, 1));
    }

    #[test]
    fn display_names_what_is_known() {
        let e = ConfigError::new("bad")
            .rule("sign_in")
            .field("quota")
            .at(3, 9);
        assert_eq!(e.to_string(), "3:9: rule \"sign_in\", field quota: bad");
        let e = e.in_file("clerk.toml".into());
        assert_eq!(
            e.to_string(),
            "clerk.toml:3:9: rule \"sign_in\", field quota: bad"
        );
        assert_eq!(ConfigError::new("bad").to_string(), "bad");
    }
}
