//! What a component must be to load: built against `pilot:plugin` 0.1.x (another major or minor
//! version is one error naming both), importing only what pilot-host offers, exporting the plugin
//! interface; and what its description must be: names by the shared naming rule, a printable version.

use std::path::Path;

use wasmtime::component::Component;

use super::bindings::Description;
use super::caps::Capability;
use super::engine::PluginEngine;
use super::load::LoadError;
use pilot_core::manifest::{escape_controls, plugin_name_problem, PluginNameKind};

/// The version of the `pilot:plugin` WIT package this host implements (`wit/plugin.wit`); plugins
/// built against any 0.1.x load.
pub const WIT_VERSION: &str = "0.1.1";

/// The world a component was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum World {
    /// `pilot-plugin`: ready strategies, lifecycle hooks, stat handlers.
    Plugin,
    /// `pilot-control`: an HTTP handler, events, control calls.
    Control,
}

/// Returns whether `component` is a control plugin (exports `pilot:plugin/control-plugin`).
pub(super) fn is_control(engine: &PluginEngine, component: &Component) -> bool {
    component
        .component_type()
        .exports(&engine.engine)
        .any(|(n, _)| n.starts_with("pilot:plugin/control-plugin@"))
}

/// Refuses a component built against another major or minor version of `pilot:plugin`, one that
/// imports what pilot-host does not offer to its `world`, or one without that world's exports.
pub(super) fn check_interface(
    engine: &PluginEngine,
    component: &Component,
    file: &Path,
    world: World,
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
        .filter(|n| match Capability::of(n) {
            None => true,
            Some(Capability::Http | Capability::Control) => world == World::Plugin,
            Some(_) => false,
        })
        .map(|n| format!("`{}`", escape_controls(&n)))
        .collect();
    if !unknown.is_empty() {
        return Err(LoadError::Link {
            file: file.to_owned(),
            message: format!(
                "it imports {}, which pilot-host does not offer to {} (it offers `pilot:plugin`, and of WASI 0.2: cli, clocks, filesystem, io, random, sockets{})",
                unknown.join(", "),
                if world == World::Plugin { "plugins" } else { "control plugins" },
                if world == World::Plugin { "; `wasi:http` and `pilot:plugin/control` only to control plugins" } else { ", http" }
            ),
        });
    }
    let needed: &[(&str, &str)] = match world {
        World::Plugin => &[("pilot:plugin/plugin@", "0.1.x")],
        World::Control => &[
            ("pilot:plugin/control-plugin@", "0.1.x"),
            ("wasi:http/incoming-handler@", "0.2.x"),
        ],
    };
    if let Some((missing, version)) = needed
        .iter()
        .find(|(want, _)| !names.iter().any(|n| n.starts_with(*want)))
    {
        let exports: Vec<&str> = names
            .iter()
            .filter(|n| !n.starts_with("wasi:"))
            .map(String::as_str)
            .collect();
        return Err(LoadError::Link {
            file: file.to_owned(),
            message: format!(
                "it does not export `{missing}{version}` (it has: {}); build it against pilot-host's `wit/`",
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
