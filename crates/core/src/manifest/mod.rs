//! The manifest: reading a YAML or JSON file, validating it into a [`Manifest`], and its JSON Schema.
//!
//! Loading goes file → [`source`] (syntax, with line and column) → [`raw`] (what the file says, key by
//! key) → validation (every problem at once) → [`Manifest`] (every invariant holds).

use std::collections::BTreeSet;
use std::path::Path;

mod control;
mod control_plugins;
mod error;
mod explain;
mod model;
mod names;
mod process;
pub mod raw;
pub mod resolve;
pub mod source;
mod validate;

pub use control_plugins::parse_grants;
pub use error::{ManifestError, Problem, ProcessRef};
pub use model::{
    ControlGrant, ControlServer, Grants, HttpGrant, Manifest, PluginSettings, ProcessSpec,
    Readiness, ReadyStrategy, RestartPolicy, ShutdownStrategy, TlsFiles,
};
pub use names::{escape_controls, plugin_name_problem, PluginNameKind, MAX_PLUGIN_NAME};
pub use process::{cpu_count, BUILTIN_READY};
pub use source::MAX_MANIFEST_BYTES;

/// The names the loaded plugins provide, which the manifest may refer to.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Whether plugins were loaded at all (changes the advice given for unknown names).
    pub loaded: bool,
    /// Plugin names.
    pub plugins: BTreeSet<String>,
    /// Ready strategy names.
    pub ready_strategies: BTreeSet<String>,
    /// Lifecycle hook names.
    pub lifecycle_hooks: BTreeSet<String>,
    /// Stat handler names.
    pub stat_handlers: BTreeSet<String>,
    /// Control plugin names (also in `plugins`).
    pub control_plugins: BTreeSet<String>,
    /// Accept any plugin name (for commands that do not run plugins, such as `graph`).
    pub accept_any: bool,
}

impl Catalog {
    /// A catalog that accepts every plugin name.
    pub fn accept_any() -> Catalog {
        Catalog {
            accept_any: true,
            ..Catalog::default()
        }
    }
}

/// A valid manifest and the warnings found while checking it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The manifest.
    pub manifest: Manifest,
    /// Doubtful but allowed things, to show the user.
    pub warnings: Vec<Problem>,
}

/// Loads and validates the manifest at `path` against what the plugins in `catalog` provide.
pub fn load(path: &Path, catalog: &Catalog) -> Result<Loaded, ManifestError> {
    let doc = source::read(path)?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match validate::validate(doc, &absolute, catalog) {
        Ok((manifest, warnings)) => Ok(Loaded { manifest, warnings }),
        Err(problems) => Err(ManifestError::Invalid {
            path: path.to_path_buf(),
            problems,
        }),
    }
}

/// Returns the JSON Schema of the manifest, for editors.
pub fn schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(raw::RawManifest).to_value();
    // The raw types keep every key optional so that validation can report all missing keys at once;
    // the schema states what validation requires.
    schema["required"] = serde_json::json!(["processes"]);
    schema["properties"]["processes"]["minItems"] = serde_json::json!(1);
    if let Some(process) = schema.pointer_mut("/$defs/RawProcess") {
        process["required"] = serde_json::json!(["name", "path"]);
        process["not"] = serde_json::json!({ "required": ["affinity", "processor_affinity"] });
    }
    schema["title"] = serde_json::json!("pilot-host manifest");
    schema
}

/// Validates the YAML `text` as if read from `/manifest.yaml`, for unit tests; panics on a problem.
#[cfg(test)]
pub(crate) fn from_yaml(text: &str) -> Manifest {
    let doc = source::parse(text, source::Format::Yaml).expect("valid YAML");
    let path = Path::new("/manifest.yaml");
    match validate::validate(doc, path, &Catalog::accept_any()) {
        Ok((manifest, _)) => manifest,
        Err(problems) => panic!("invalid test manifest: {problems:?}"),
    }
}
