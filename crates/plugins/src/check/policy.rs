//! The capabilities policy of `plugin check`: which capabilities a plugin's imports may ask for.
//! Without `--allow`, everything pilot-host offers is allowed; `--allow CAP` makes the policy a list of
//! what is allowed; `--deny CAP` takes a capability away. A policy file (`--policy FILE`, YAML or
//! JSON) holds the same: `{ allow: [files, clocks], deny: [network] }`.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::caps::Capability;

/// Which capabilities a plugin may import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    allowed: BTreeSet<Capability>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    allow: Vec<Capability>,
    #[serde(default)]
    deny: Vec<Capability>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(&[], &[])
    }
}

impl Policy {
    /// Builds the policy from what is allowed (nothing listed: everything) and what is denied.
    pub fn new(allow: &[Capability], deny: &[Capability]) -> Policy {
        let mut allowed: BTreeSet<Capability> = if allow.is_empty() {
            Capability::ALL.into_iter().collect()
        } else {
            allow.iter().copied().collect()
        };
        for d in deny {
            allowed.remove(d);
        }
        Policy { allowed }
    }

    /// Builds the policy of a policy file, with `allow` and `deny` from the command line added.
    pub fn from_file(
        path: &Path,
        allow: &[Capability],
        deny: &[Capability],
    ) -> Result<Policy, String> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read policy file `{shown}`: {e}"))?;
        let raw: RawPolicy = serde_yaml::from_str(&text).map_err(|e| {
            let known: Vec<&str> = Capability::ALL.iter().map(|c| c.name()).collect();
            format!(
                "policy file `{shown}` is not valid: {e} (capabilities: {})",
                known.join(", ")
            )
        })?;
        let allow: Vec<Capability> = raw.allow.iter().chain(allow).copied().collect();
        let deny: Vec<Capability> = raw.deny.iter().chain(deny).copied().collect();
        Ok(Policy::new(&allow, &deny))
    }

    /// Returns whether `capability` may be imported.
    pub fn allows(&self, capability: Capability) -> bool {
        capability.always() || self.allowed.contains(&capability)
    }

    /// Returns the capabilities allowed, for messages.
    pub fn allowed(&self) -> Vec<&'static str> {
        Capability::ALL
            .iter()
            .filter(|c| self.allows(**c))
            .map(|c| c.name())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Capability::*;

    #[test]
    fn allow_lists_deny_takes_away_host_and_io_always_stay() {
        let all = Policy::default();
        assert!(Capability::ALL.iter().all(|c| all.allows(*c)));
        let strict = Policy::new(&[Clocks], &[]);
        assert!(strict.allows(Clocks) && strict.allows(Host) && strict.allows(Io));
        assert!(!strict.allows(Files) && !strict.allows(Network));
        let no_net = Policy::new(&[], &[Network, Host]);
        assert!(!no_net.allows(Network) && no_net.allows(Files) && no_net.allows(Host));
    }
}
