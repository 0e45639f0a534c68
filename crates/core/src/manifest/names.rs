//! The rule for the names a plugin supplies (its own name and those of its ready strategies, lifecycle
//! hooks and stat handlers): one function, used by `run`, `validate` and `plugin check` alike, and the
//! way any text a plugin supplies is shown on a terminal.

use super::process::BUILTIN_READY;

/// The longest name a plugin may supply.
pub const MAX_PLUGIN_NAME: usize = 64;

/// What a plugin-supplied name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginNameKind {
    /// The plugin's own name (the key of its `plugins.<name>` section).
    Plugin,
    /// A ready strategy (a process's `ready_strategy`).
    ReadyStrategy,
    /// A lifecycle hook (in a process's `lifecycle_hooks`).
    LifecycleHook,
    /// A stat handler (in a process's `stat_handlers`).
    StatHandler,
}

impl PluginNameKind {
    /// Returns the kind as messages name it.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginNameKind::Plugin => "plugin name",
            PluginNameKind::ReadyStrategy => "ready strategy",
            PluginNameKind::LifecycleHook => "lifecycle hook",
            PluginNameKind::StatHandler => "stat handler",
        }
    }
}

/// Returns why `name` cannot be a plugin-supplied name of `kind`, or `None` when it can be.
///
/// A name is 1 to 64 letters, digits, `-`, `_` and `.`; a ready strategy must not shadow a built-in
/// one (`tcp`, `pipe`, `file`). The message names the kind and shows the name with its control
/// characters escaped, e.g. "ready strategy `tcp` shadows the built-in one; rename it".
pub fn plugin_name_problem(kind: PluginNameKind, name: &str) -> Option<String> {
    let what = kind.as_str();
    let shown = escape_controls(name);
    let rule = "names are 1 to 64 letters, digits, `-`, `_` and `.`";
    let why = if name.is_empty() {
        "is empty".to_string()
    } else if let Some(c) = name.chars().find(|c| c.is_control()) {
        format!("holds the control character `{}`", c.escape_unicode())
    } else if name.chars().any(char::is_whitespace) {
        "holds whitespace".to_string()
    } else if let Some(c) = name.chars().find(|c| matches!(c, '/' | '\\')) {
        format!("holds the path separator `{c}`")
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        format!("holds `{c}`")
    } else if name.len() > MAX_PLUGIN_NAME {
        format!("is {} characters long", name.len())
    } else if kind == PluginNameKind::ReadyStrategy && BUILTIN_READY.contains(&name) {
        return Some(format!(
            "{what} `{shown}` shadows the built-in one; rename it"
        ));
    } else {
        return None;
    };
    Some(format!("{what} `{shown}` {why}; {rule}"))
}

/// Returns `text` with control characters (escape sequences, newlines, tabs) written as `\u{..}`, so
/// text a plugin supplies can be shown on a terminal as it is without acting on it.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::PluginNameKind::*;
    use super::*;

    #[test]
    fn good_names_pass() {
        for name in ["http", "file-ready", "a.b_c-1", &"x".repeat(64)] {
            assert_eq!(plugin_name_problem(ReadyStrategy, name), None, "{name}");
        }
        // Only ready strategies can shadow a built-in.
        assert_eq!(plugin_name_problem(LifecycleHook, "tcp"), None);
    }

    #[test]
    fn each_bad_name_says_why() {
        let cases = [
            (Plugin, "", "plugin name `` is empty"),
            (
                ReadyStrategy,
                "red\x1b[31m",
                "ready strategy `red\\u{1b}[31m` holds the control character `\\u{1b}`",
            ),
            (StatHandler, "a b", "stat handler `a b` holds whitespace"),
            (
                LifecycleHook,
                "../x",
                "lifecycle hook `../x` holds the path separator `/`",
            ),
            (Plugin, "a\\b", "holds the path separator `\\`"),
            (Plugin, "a:b", "holds `:`"),
            (Plugin, &"x".repeat(65), "is 65 characters long"),
            (
                ReadyStrategy,
                "pipe",
                "ready strategy `pipe` shadows the built-in one; rename it",
            ),
        ];
        for (kind, name, want) in cases {
            let got = plugin_name_problem(kind, name).expect("a problem");
            assert!(got.contains(want), "{name:?}: {got}");
        }
    }

    #[test]
    fn controls_are_escaped_not_printed() {
        assert_eq!(escape_controls("a\x1b[31mb\n"), "a\\u{1b}[31mb\\u{a}");
    }
}
