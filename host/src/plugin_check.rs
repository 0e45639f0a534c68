//! The command line of `pilot-host plugin check` (the checks themselves are `pilot_plugins::check`): its arguments, reading the inputs (exit 2 when one
//! cannot be read), checking each file, and printing the reports as text, JSON or SARIF.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::plugin::caps::Capability;
use crate::plugin::check::policy::Policy;
use crate::plugin::check::report::{Document, Report};
use crate::plugin::check::spec::Spec;
use crate::plugin::check::{check_file, sarif, specs_for, Budget, Options};
use crate::plugin::{default_cache_dir, PluginHost};

/// How the reports are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Text for people.
    Human,
    /// The versioned JSON document (`docs/plugin-check.md`).
    Json,
    /// A SARIF 2.1.0 log.
    Sarif,
}

/// Arguments of `plugin check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The `.wasm` files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// How to print the reports.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// Print the reports as JSON (the same as `--format json`).
    #[arg(long)]
    pub json: bool,
    /// Configuration to `init` the plugins with, as JSON (as `plugins.<name>.config` would).
    #[arg(long, value_name = "JSON")]
    pub config: Option<String>,
    /// `ready_params` for the smoke tests of ready strategies, as JSON (default `{}`).
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// A spec file of calls and expected answers (repeatable; default: `plugin-check.yaml` beside
    /// each file).
    #[arg(long, value_name = "FILE")]
    pub spec: Vec<PathBuf>,
    /// Wall-clock limit of each call in milliseconds (default: the production limit, 1000).
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Budget: fuel per call.
    #[arg(long, value_name = "FUEL")]
    pub max_fuel: Option<u64>,
    /// Budget: peak linear memory per call, in MiB.
    #[arg(long, value_name = "MIB")]
    pub max_memory_mib: Option<u64>,
    /// Budget: wall time per call, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub max_ms: Option<f64>,
    /// Budget: size of the component file, in MiB.
    #[arg(long, value_name = "MIB")]
    pub max_size_mib: Option<f64>,
    /// Allow only these capabilities (repeatable; default: all pilot-host offers).
    #[arg(long, value_name = "CAP", value_parser = capability)]
    pub allow: Vec<Capability>,
    /// Deny a capability (repeatable).
    #[arg(long, value_name = "CAP", value_parser = capability)]
    pub deny: Vec<Capability>,
    /// A policy file: `{ allow: [...], deny: [...] }` (YAML or JSON).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

/// Parses a capability by its name in reports and policy files (`files`, `network`, ...).
fn capability(name: &str) -> Result<Capability, String> {
    let found = Capability::ALL.into_iter().find(|c| c.name() == name);
    found.ok_or_else(|| {
        let names: Vec<&str> = Capability::ALL.iter().map(|c| c.name()).collect();
        format!("not a capability; use one of: {}", names.join(", "))
    })
}

/// Why `plugin check` did not pass.
#[derive(Debug)]
pub enum CheckFailure {
    /// An input could not be read (exit 2).
    BadInput(String),
    /// A plugin has findings, or the check itself failed at run time (exit 1).
    Failed(String),
}

fn options(args: &CheckArgs) -> Result<Options, CheckFailure> {
    let bad = CheckFailure::BadInput;
    let config = args
        .config
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
        .map_err(|e| bad(format!("`--config` is not JSON: {e}")))?;
    if let Some(p) = &args.params {
        serde_json::from_str::<serde_json::Value>(p)
            .map_err(|e| bad(format!("`--params` is not JSON: {e}")))?;
    }
    let policy = match &args.policy {
        Some(file) => Policy::from_file(file, &args.allow, &args.deny).map_err(bad)?,
        None => Policy::new(&args.allow, &args.deny),
    };
    let specs = args
        .spec
        .iter()
        .map(|s| Spec::read(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    Ok(Options {
        config,
        call_timeout: args.timeout_ms.map(Duration::from_millis),
        params: args.params.clone(),
        specs,
        budget: Budget {
            max_fuel: args.max_fuel,
            max_memory_mib: args.max_memory_mib,
            max_ms: args.max_ms,
            max_size_mib: args.max_size_mib,
        },
        policy,
    })
}

/// Runs `plugin check` and prints the reports on standard output.
pub async fn run(args: &CheckArgs) -> Result<(), CheckFailure> {
    let opts = options(args)?;
    let mut specs = Vec::new();
    for file in &args.files {
        if let Err(e) = std::fs::File::open(file).and_then(|f| f.metadata()) {
            return Err(CheckFailure::BadInput(format!(
                "cannot read `{}`: {e}",
                file.display()
            )));
        }
        if !file.is_file() {
            return Err(CheckFailure::BadInput(format!(
                "`{}` is not a file",
                file.display()
            )));
        }
        specs.push(specs_for(&opts, file).map_err(CheckFailure::BadInput)?);
    }
    let host = PluginHost::new(default_cache_dir())
        .map_err(|e| CheckFailure::BadInput(format!("cannot start the plugin runtime: {e:#}")))?;
    let mut reports = Vec::new();
    for (file, specs) in args.files.iter().zip(&specs) {
        reports.push(check_file(&host, file, &opts, specs).await);
    }
    print(args, &reports).map_err(|e| CheckFailure::Failed(format!("cannot print: {e}")))?;
    unused_specs(&opts, &reports)?;
    let misfits: Vec<&String> = reports.iter().flat_map(|r| &r.spec_errors).collect();
    if let Some(first) = misfits.first() {
        return Err(CheckFailure::BadInput(first.to_string()));
    }
    let findings: usize = reports.iter().map(|r| r.findings.len()).sum();
    if findings == 0 {
        return Ok(());
    }
    Err(CheckFailure::Failed(format!(
        "{findings} {} in {} of {} plugins",
        if findings == 1 { "finding" } else { "findings" },
        reports.iter().filter(|r| !r.findings.is_empty()).count(),
        reports.len()
    )))
}

fn print(args: &CheckArgs, reports: &[Report]) -> std::io::Result<()> {
    let format = if args.json { Format::Json } else { args.format };
    let mut out = std::io::stdout().lock();
    match format {
        Format::Human => {
            for r in reports {
                r.write_text(&mut out)?;
            }
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &Document::new(reports))?;
            writeln!(out)?;
        }
        Format::Sarif => {
            serde_json::to_writer_pretty(&mut out, &sarif::log(reports))?;
            writeln!(out)?;
        }
    }
    out.flush()
}

/// A `--spec` naming a plugin that none of the files is, is a mistake on the command line.
fn unused_specs(opts: &Options, reports: &[Report]) -> Result<(), CheckFailure> {
    for spec in &opts.specs {
        let Some(plugin) = &spec.plugin else { continue };
        if !reports.iter().any(|r| r.name.as_deref() == Some(plugin)) {
            let names: Vec<String> = reports.iter().filter_map(|r| r.name.clone()).collect();
            return Err(CheckFailure::BadInput(format!(
                "spec file `{}` is for plugin `{plugin}`, and none of the files checked is (they are: {})",
                spec.file.display(),
                if names.is_empty() { "none described itself".into() } else { names.join(", ") }
            )));
        }
    }
    Ok(())
}
