//! Reading a manifest file into a JSON value, with syntax errors that carry file, line and column.
//!
//! JSON manifests may contain `//` and `/* */` comments (Process Pilot's README example has one); they are
//! blanked out before parsing, keeping every line and column where it was.

use std::path::Path;

use super::ManifestError;

/// The formats a manifest can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.yaml` or `.yml`.
    Yaml,
    /// `.json`, comments allowed.
    Json,
}

impl Format {
    /// Returns the format named by `path`'s extension.
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Reads and parses `path` into a JSON value.
pub fn read(path: &Path) -> Result<serde_json::Value, ManifestError> {
    let format = Format::of(path).ok_or_else(|| ManifestError::Format {
        path: path.to_owned(),
    })?;
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, format).map_err(|(line, column, message)| ManifestError::Syntax {
        path: path.to_owned(),
        line,
        column,
        message,
    })
}

/// Parses `text`; an error is `(line, column, message)`, 1-based.
pub fn parse(text: &str, format: Format) -> Result<serde_json::Value, (usize, usize, String)> {
    match format {
        Format::Json => serde_json::from_str(&strip_json_comments(text)).map_err(|e| {
            let message = strip_location(&e.to_string());
            (e.line(), e.column(), format!("invalid JSON: {message}"))
        }),
        Format::Yaml => {
            if text.trim().is_empty() {
                return Err((
                    1,
                    1,
                    "the file is empty; a manifest needs a `processes` list".into(),
                ));
            }
            serde_yaml::from_str(text).map_err(|e| {
                let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
                let message = strip_location(&e.to_string());
                (line, column, format!("invalid YAML: {message}"))
            })
        }
    }
}

/// Drops the " at line X column Y" that serde's messages append, since we print it up front.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Replaces `//` and `/* */` comments outside strings with spaces, keeping newlines.
pub fn strip_json_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            out.push(b);
            if b == b'\\' && i + 1 < bytes.len() {
                out.push(bytes[i + 1]);
                i += 1;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match (b, bytes.get(i + 1)) {
            (b'"', _) => {
                in_string = true;
                out.push(b);
                i += 1;
            }
            (b'/', Some(b'/')) => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    out.push(b' ');
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                out.extend_from_slice(b"  ");
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    out.push(if bytes[i] == b'\n' { b'\n' } else { b' ' });
                    i += 1;
                }
                if i < bytes.len() {
                    out.extend_from_slice(b"  ");
                    i += 2;
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Only ASCII bytes were replaced by ASCII bytes, so this stays valid UTF-8.
    String::from_utf8(out).expect("comment stripping keeps UTF-8 intact")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_become_spaces_and_strings_are_kept() {
        let text = "{\"a\": \"x//y\", // note\n \"b\": /* c\n d */ 1}";
        let stripped = strip_json_comments(text);
        assert_eq!(stripped.lines().count(), text.lines().count());
        let v: serde_json::Value = serde_json::from_str(&stripped).unwrap();
        assert_eq!(v["a"], "x//y");
        assert_eq!(v["b"], 1);
    }

    #[test]
    fn escaped_quote_does_not_end_a_string() {
        let v: serde_json::Value =
            serde_json::from_str(&strip_json_comments(r#"{"a": "q\"//not a comment"}"#)).unwrap();
        assert_eq!(v["a"], "q\"//not a comment");
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let (line, column, message) =
            parse("{\n  \"a\": 1,\n  \"b\" 2\n}", Format::Json).unwrap_err();
        assert_eq!((line, column), (3, 7));
        assert!(
            message.starts_with("invalid JSON: expected `:`"),
            "{message}"
        );
        let (line, _, message) = parse("a: 1\nb: [1, 2\nc: 3\n", Format::Yaml).unwrap_err();
        assert!(line >= 2, "{line}: {message}");
    }
}
