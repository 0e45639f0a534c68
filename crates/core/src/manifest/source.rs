//! Reading a manifest file into a JSON value, with syntax errors that carry file, line and column.
//!
//! JSON manifests may contain `//` and `/* */` comments (Process Pilot's README example has one); they are
//! blanked out before parsing, keeping every line and column where it was.
//!
//! A key written twice in one mapping is a syntax error in both formats, as a typo would be: the first
//! value must not vanish silently. YAML merge keys (`<<: *base`) are applied. YAML's `.nan`, `.inf` and
//! `-.inf` have no JSON form, so they become the strings [`NON_FINITE`] for the validator to reject by
//! name instead of turning into `null` and silently taking a default.

use std::fmt;

use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::ManifestError;

/// How YAML's non-finite numbers appear in the parsed document: NaN, +∞, -∞.
pub const NON_FINITE: [&str; 3] = [".nan", ".inf", "-.inf"];

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
pub fn read(path: &Path) -> Result<Value, ManifestError> {
    let format = Format::of(path).ok_or_else(|| ManifestError::Format {
        path: path.to_owned(),
    })?;
    let text = read_text(path)?;
    parse(&text, format).map_err(|(line, column, message)| ManifestError::Syntax {
        path: path.to_owned(),
        line,
        column,
        message,
    })
}

/// The largest manifest read: 4 MiB, far above any real one (a thousand processes take about 200 KB).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Reads the regular file `path` as UTF-8 text of at most [`MAX_MANIFEST_BYTES`]. It is opened without
/// blocking and checked through its descriptor, so a FIFO or a device is refused, never read.
pub fn read_text(path: &Path) -> Result<String, ManifestError> {
    use std::io::Read as _;
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let io = |error| ManifestError::Read {
        path: path.to_owned(),
        error,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EISDIR) => ManifestError::NotAFile {
                path: path.to_owned(),
                what: "a folder",
            },
            _ => io(e),
        })?;
    let meta = file.metadata().map_err(io)?;
    let kind = meta.file_type();
    let what = if kind.is_dir() {
        Some("a folder")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("a device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        None
    };
    if let Some(what) = what {
        return Err(ManifestError::NotAFile {
            path: path.to_owned(),
            what,
        });
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooBig {
            path: path.to_owned(),
            size: meta.len(),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooBig {
            path: path.to_owned(),
            size: bytes.len() as u64,
            limit: MAX_MANIFEST_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let bad = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..bad];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = bad
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        ManifestError::NotUtf8 {
            path: path.to_owned(),
            line,
            column,
        }
    })
}

/// Parses `text`; an error is `(line, column, message)`, 1-based.
pub fn parse(text: &str, format: Format) -> Result<Value, (usize, usize, String)> {
    match format {
        Format::Json => serde_json::from_str::<Unique>(&strip_json_comments(text))
            .map(|u| u.0)
            .map_err(|e| {
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
            let yaml_error = |e: serde_yaml::Error| {
                // Errors without a position come from merging; point at the first merge key.
                let (line, column) = e
                    .location()
                    .map_or_else(|| merge_key_position(text), |l| (l.line(), l.column()));
                let message = strip_location(&e.to_string());
                (
                    line,
                    column,
                    format!("invalid YAML: {}", duplicate_wording(&message)),
                )
            };
            let mut value: serde_yaml::Value = serde_yaml::from_str(text).map_err(yaml_error)?;
            value.apply_merge().map_err(yaml_error)?;
            yaml_to_json(value).map_err(|m| (1, 1, format!("invalid YAML: {m}")))
        }
    }
}

/// Drops the first " at line X column Y" of serde's messages, since we print it up front; the rest
/// (libyaml's "while parsing a flow sequence at line 5 column 11") says where the trouble began.
fn strip_location(message: &str) -> String {
    let Some(start) = message.find(" at line ") else {
        return message.to_string();
    };
    let rest = &message[start + " at line ".len()..];
    let numbers = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let mut end = start + " at line ".len() + numbers(rest);
    if let Some(col) = message[end..].strip_prefix(" column ") {
        end += " column ".len() + numbers(col);
    }
    format!("{}{}", &message[..start], &message[end..])
}

/// Rewords serde_yaml's "duplicate entry with key \"x\"" in our style.
fn duplicate_wording(message: &str) -> String {
    match message.split_once("duplicate entry with key \"") {
        Some((path, rest)) => {
            let key = rest.trim_end_matches('"');
            let place = path.trim_end_matches(": ");
            let place = if place.is_empty() {
                String::new()
            } else {
                format!(" in `{place}`")
            };
            format!("key `{key}` is written twice{place}; keep one")
        }
        None => message.to_string(),
    }
}

/// Returns the 1-based position of the first `<<` merge key in `text`, or the start of the file.
fn merge_key_position(text: &str) -> (usize, usize) {
    text.lines()
        .enumerate()
        .find_map(|(i, line)| line.find("<<").map(|col| (i + 1, col + 1)))
        .unwrap_or((1, 1))
}

/// Converts a YAML value to JSON: scalar keys become strings, tags are dropped, and non-finite numbers
/// become [`NON_FINITE`] strings.
fn yaml_to_json(value: serde_yaml::Value) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map_or_else(|| Value::String(non_finite(f).to_string()), Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut object = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    Y::Null => "null".to_string(),
                    _ => {
                        return Err(
                            "a mapping key must be a plain value, not a list or mapping".into()
                        )
                    }
                };
                object.insert(key, yaml_to_json(value)?);
            }
            Value::Object(object)
        }
        Y::Tagged(tagged) => yaml_to_json(tagged.value)?,
    })
}

/// Returns the [`NON_FINITE`] spelling of a NaN or infinite `f`.
fn non_finite(f: f64) -> &'static str {
    if f.is_nan() {
        NON_FINITE[0]
    } else if f > 0.0 {
        NON_FINITE[1]
    } else {
        NON_FINITE[2]
    }
}

/// A JSON value whose mappings have no key twice.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v)
            .map_or_else(|| Value::String(non_finite(v).into()), Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Unique(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "key `{key}` is written twice in one object; keep one"
                )));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
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
        assert!(
            message.contains("while parsing a flow sequence at line 2 column 4"),
            "{message}"
        );
    }

    #[test]
    fn keys_written_twice_are_errors() {
        let (line, _, message) = parse("{\"a\": 1,\n \"a\": 2}", Format::Json).unwrap_err();
        assert_eq!(line, 2);
        assert!(message.contains("key `a` is written twice"), "{message}");
        let (_, _, message) = parse("p:\n  a: 1\n  a: 2\n", Format::Yaml).unwrap_err();
        assert_eq!(
            message,
            "invalid YAML: key `a` is written twice in `p`; keep one"
        );
    }

    #[test]
    fn yaml_merge_keys_apply_and_non_finite_numbers_are_kept_by_name() {
        let v = parse(
            "b: &b { x: 1, y: .nan }\nc: { <<: *b, x: 2, z: -.inf }\n",
            Format::Yaml,
        )
        .unwrap();
        assert_eq!(
            v["c"],
            serde_json::json!({ "x": 2, "y": ".nan", "z": "-.inf" })
        );
    }
}
