//! What a component must be to load: built against `pilot:plugin` 0.1.x (another major or minor
//! version is one error naming both), importing only what pilot-host offers, exporting the plugin
//! interface; and what its description must be: names by the shared naming rule, a printable version.

use std::path::Path;

use wasmtime::component::Component;

use super::bindings::Description;
use super::caps::Capability;
use super::engine::PluginEngine;
use super::load::LoadError;
use crate::manifest::{escape_controls, plugin_name_problem, PluginNameKind};

/// The version of the `pilot:plugin` WIT package this host implements (`wit/plugin.wit`); plugins
/// built against any 0.1.x load.
pub const WIT_VERSION: &str = "0.1.0";

/// Refuses a component built against another major or minor version of `pilot:plugin`, one that
/// imports what pilot-host does not offer, or one without the `pilot:plugin` exports.
pub(super) fn check_interface(
    engine: &PluginEngine,
    component: &Component,
    file: &Path,
) -> Result<(), LoadError> {
    let ty = component.component_type();
    let names: Vec<String> = ty
        .imports(&engine.engine)
        .map(|(n, _)| n.to_string())
        .chain(ty.exports(&engine.engine).map(|(n, _)| n.to_string()))
        .collect();
    for name in &names {
        let Some(version) = name
            .strip_prefix("pilot:plugin/")
            .and_then(|rest| rest.split_once('@'))
            .map(|(_, v)| v)
        else {
            continue;
        };
        if !compatible(version) {
            return Err(LoadError::WitVersion {
                file: file.to_owned(),
                found: escape_controls(version),
            });
        }
    }
    let unknown: Vec<String> = ty
        .imports(&engine.engine)
        .map(|(n, _)| n.to_string())
        .filter(|n| Capability::of(n).is_none())
        .map(|n| format!("`{}`", escape_controls(&n)))
        .collect();
    if !unknown.is_empty() {
        return Err(LoadError::Link {
            file: file.to_owned(),
            message: format!(
                "it imports {}, which pilot-host does not offer to plugins (it offers `pilot:plugin`, and of WASI 0.2: cli, clocks, filesystem, io, random, sockets)",
                unknown.join(", ")
            ),
        });
    }
    if !names.iter().any(|n| n.starts_with("pilot:plugin/plugin@")) {
        let exports: Vec<&str> = names
            .iter()
            .filter(|n| !n.starts_with("wasi:"))
            .map(String::as_str)
            .collect();
        return Err(LoadError::Link {
            file: file.to_owned(),
            message: format!(
                "it does not export `pilot:plugin/plugin@0.1.x` (it has: {}); build it against pilot-host's `wit/`",
                if exports.is_empty() { "nothing else".into() } else { escape_controls(&exports.join(", ")) }
            ),
        });
    }
    Ok(())
}

/// Returns whether `version` (semver) is compatible with [`WIT_VERSION`]: the same 0.1.
fn compatible(version: &str) -> bool {
    let mut parts = version.split(['.', '-', '+']);
    let ours: Vec<&str> = WIT_VERSION.split('.').collect();
    parts.next() == Some(ours[0]) && parts.next() == Some(ours[1])
}

/// Returns every problem of a description: names by the shared rule, and a version that could not
/// be shown as it is.
pub fn description_problems(d: &Description) -> Vec<String> {
    let names = std::iter::once((PluginNameKind::Plugin, &d.name))
        .chain(
            d.ready_strategies
                .iter()
                .map(|n| (PluginNameKind::ReadyStrategy, n)),
        )
        .chain(
            d.lifecycle_hooks
                .iter()
                .map(|n| (PluginNameKind::LifecycleHook, n)),
        )
        .chain(
            d.stat_handlers
                .iter()
                .map(|n| (PluginNameKind::StatHandler, n)),
        );
    let mut problems: Vec<String> = names
        .filter_map(|(kind, name)| plugin_name_problem(kind, name))
        .map(|p| format!("`describe`: {p}"))
        .collect();
    if d.version.is_empty()
        || d.version.len() > 64
        || d.version
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        problems.push(format!(
            "`describe`: the version `{}` is not 1 to 64 characters without whitespace or control characters, like `1.2.0`",
            escape_controls(&d.version)
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wit_version_is_the_one_in_wit() {
        let wit = include_str!("../../../wit/plugin.wit");
        assert!(wit.contains(&format!("package pilot:plugin@{WIT_VERSION};")));
    }

    #[test]
    fn patch_versions_are_compatible_minor_and_major_are_not() {
        for v in ["0.1.0", "0.1.1", "0.1.9-rc1"] {
            assert!(compatible(v), "{v}");
        }
        for v in ["0.2.0", "1.1.0", "0.10.0", ""] {
            assert!(!compatible(v), "{v}");
        }
    }
}
