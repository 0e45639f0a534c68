//! Rewording serde's type errors for people editing a manifest, with "did you mean" suggestions.

use super::source::NON_FINITE;

/// Returns the closest of `options` to `word`, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, options: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = word.chars().count();
    let limit = (len / 3).max(1);
    options
        .into_iter()
        .map(|o| (strsim::damerau_levenshtein(word, o), o))
        .filter(|(d, o)| *d <= limit && *d < len.min(o.chars().count()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, o)| o)
}

/// Formats names as a backticked list: "`a`, `b`", eliding past `max`.
pub fn list<S: AsRef<str>>(names: &[S], max: usize) -> String {
    let mut shown: Vec<String> = names
        .iter()
        .take(max)
        .map(|n| format!("`{}`", n.as_ref()))
        .collect();
    if names.len() > max {
        shown.push(format!("and {} more", names.len() - max));
    }
    shown.join(", ")
}

/// Returns the backticked words of a serde message, in order.
fn ticked(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

/// Rewords a serde error met while reading the value of `key`.
pub fn serde_message(key: &str, message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let words = ticked(rest);
        let (unknown, known) = words.split_first().map_or(("", &[][..]), |(u, k)| (*u, k));
        let hint = match closest(unknown, known.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("known keys: {}", list(known, 30)),
        };
        return if unknown == key {
            format!("unknown key; {hint}")
        } else {
            format!("unknown key `{unknown}`; {hint}")
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let words = ticked(rest);
        let (bad, known) = words.split_first().map_or(("", &[][..]), |(u, k)| (*u, k));
        let hint = closest(bad, known.iter().copied())
            .map(|best| format!("; did you mean `{best}`?"))
            .unwrap_or_default();
        return format!("`{bad}` is not one of {}{hint}", list(known, 30));
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((found, expected)) = rest.split_once(", expected ") {
                let non_finite = NON_FINITE
                    .iter()
                    .find(|n| found == format!("string \"{n}\""));
                if let (Some(n), "f64") = (non_finite, expected) {
                    return format!("must be a finite number, got `{n}`; write an ordinary number");
                }
                let found = match found {
                    "map" => "a mapping",
                    "sequence" => "a list",
                    other => other,
                };
                return format!("expected {}, found {found}", plain_type(expected));
            }
        }
    }
    message.to_string()
}

fn plain_type(rust: &str) -> String {
    match rust {
        "f64" | "f32" => "a number".into(),
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number ≥ 0".into(),
        "i64" | "i32" => "a whole number".into(),
        "a sequence" => "a list".into(),
        "a map" => "a mapping".into(),
        other if other.starts_with("struct ") => "a mapping".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_gets_the_closest_known_key() {
        let m = serde_message(
            "ready_stratgy",
            "unknown field `ready_stratgy`, expected one of `name`, `ready_strategy`",
        );
        assert_eq!(m, "unknown key; did you mean `ready_strategy`?");
        let m = serde_message(
            "restart",
            "unknown field `facto`, expected one of `factor`, `jitter`",
        );
        assert_eq!(m, "unknown key `facto`; did you mean `factor`?");
        let m = serde_message("zzz", "unknown field `zzz`, expected `name` or `path`");
        assert_eq!(m, "unknown key; known keys: `name`, `path`");
    }

    #[test]
    fn unknown_variant_lists_the_choices() {
        let m = serde_message(
            "shutdown_strategy",
            "unknown variant `restrat`, expected one of `restart`, `do_not_restart`",
        );
        assert_eq!(
            m,
            "`restrat` is not one of `restart`, `do_not_restart`; did you mean `restart`?"
        );
    }

    #[test]
    fn type_errors_name_plain_types() {
        let m = serde_message("timeout", "invalid type: string \"abc\", expected f64");
        assert_eq!(m, "expected a number, found string \"abc\"");
        let m = serde_message("affinity", "invalid value: integer `-1`, expected usize");
        assert_eq!(m, "expected a whole number ≥ 0, found integer `-1`");
        let m = serde_message("timeout", "invalid type: string \".nan\", expected f64");
        assert_eq!(
            m,
            "must be a finite number, got `.nan`; write an ordinary number"
        );
    }

    #[test]
    fn lists_are_elided() {
        assert_eq!(list(&["a", "b", "c"], 2), "`a`, `b`, and 1 more");
        assert_eq!(closest("wbe", ["web", "db"]), Some("web"));
        assert_eq!(closest("zzzzzz", ["web", "db"]), None);
        assert_eq!(closest("db", ["b", "web"]), None);
        assert_eq!(closest("restrat", ["restart"]), Some("restart"));
    }
}
