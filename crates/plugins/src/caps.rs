//! The capabilities a plugin's imports ask for, by import name: what pilot-host offers plugins, and
//! the words `plugin check --allow/--deny` and its policy files use.

use serde::{Deserialize, Serialize};

/// A capability a plugin's imports ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// The pilot-host plugin interface (`pilot:plugin/*`); always allowed.
    Host,
    /// Streams and polling (`wasi:io/*`), which the others build on; always allowed.
    Io,
    /// Standard input, output and error (`wasi:cli/std*`, `wasi:cli/terminal-*`); output goes to the log.
    Stdio,
    /// Ending the instance with an exit code (`wasi:cli/exit`).
    Exit,
    /// Environment variables and arguments (`wasi:cli/environment`); granted with `allow_env`.
    Environment,
    /// Wall and monotonic clocks (`wasi:clocks/*`).
    Clocks,
    /// Random numbers (`wasi:random/*`).
    Random,
    /// Files (`wasi:filesystem/*`); granted with `allow_read` / `allow_write`.
    Files,
    /// Sockets and name lookups (`wasi:sockets/*`); TCP granted with `allow_tcp`.
    Network,
    /// Outgoing HTTP requests (`wasi:http/*`), control plugins only; granted with `grants.http`.
    Http,
    /// The supervisor's control calls (`pilot:plugin/control`), control plugins only; granted with
    /// `grants.control`.
    Control,
}

impl Capability {
    /// Every capability, in the order reports list them.
    pub const ALL: [Capability; 11] = [
        Capability::Host,
        Capability::Io,
        Capability::Stdio,
        Capability::Exit,
        Capability::Environment,
        Capability::Clocks,
        Capability::Random,
        Capability::Files,
        Capability::Network,
        Capability::Http,
        Capability::Control,
    ];

    /// Returns the capability's name, as `--allow` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Host => "host",
            Capability::Io => "io",
            Capability::Stdio => "stdio",
            Capability::Exit => "exit",
            Capability::Environment => "environment",
            Capability::Clocks => "clocks",
            Capability::Random => "random",
            Capability::Files => "files",
            Capability::Network => "network",
            Capability::Http => "http",
            Capability::Control => "control",
        }
    }

    /// Returns what it gives, for people.
    pub fn what(self) -> &'static str {
        match self {
            Capability::Host => "the pilot-host plugin interface",
            Capability::Io => "streams and polling",
            Capability::Stdio => "standard streams (to the host log)",
            Capability::Exit => "exiting with a status",
            Capability::Environment => "environment variables (granted with `allow_env`)",
            Capability::Clocks => "clocks",
            Capability::Random => "randomness",
            Capability::Files => "files (granted with `allow_read` / `allow_write`)",
            Capability::Network => "network (granted with `allow_tcp`)",
            Capability::Http => "outgoing HTTP (control plugins; granted with `grants.http`)",
            Capability::Control => {
                "the supervisor's control calls (control plugins; granted with `grants.control`)"
            }
        }
    }

    /// Returns whether no policy can refuse it (everything else builds on it).
    pub fn always(self) -> bool {
        matches!(self, Capability::Host | Capability::Io)
    }

    /// Returns the capability an import asks for, or `None` if pilot-host does not offer it.
    pub fn of(import: &str) -> Option<Capability> {
        let (package, rest) = import.split_once('/')?;
        let interface = rest.split('@').next().unwrap_or(rest);
        Some(match (package, interface) {
            ("pilot:plugin", "control") => Capability::Control,
            ("pilot:plugin", _) => Capability::Host,
            ("wasi:http", _) => Capability::Http,
            ("wasi:io", _) => Capability::Io,
            ("wasi:cli", "environment") => Capability::Environment,
            ("wasi:cli", "exit") => Capability::Exit,
            ("wasi:cli", i) if i.starts_with("std") || i.starts_with("terminal-") => {
                Capability::Stdio
            }
            ("wasi:clocks", _) => Capability::Clocks,
            ("wasi:random", _) => Capability::Random,
            ("wasi:filesystem", _) => Capability::Files,
            ("wasi:sockets", _) => Capability::Network,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_map_to_capabilities() {
        for (import, want) in [
            ("pilot:plugin/host@0.1.0", Some(Capability::Host)),
            ("wasi:cli/environment@0.2.3", Some(Capability::Environment)),
            ("wasi:cli/stderr@0.2.0", Some(Capability::Stdio)),
            ("wasi:cli/terminal-stdout@0.2.0", Some(Capability::Stdio)),
            ("wasi:cli/exit@0.2.0", Some(Capability::Exit)),
            ("wasi:sockets/tcp@0.2.0", Some(Capability::Network)),
            ("wasi:filesystem/preopens@0.2.0", Some(Capability::Files)),
            ("wasi:http/outgoing-handler@0.2.0", Some(Capability::Http)),
            ("pilot:plugin/control@0.1.1", Some(Capability::Control)),
            ("env", None),
        ] {
            assert_eq!(Capability::of(import), want, "{import}");
        }
    }
}
