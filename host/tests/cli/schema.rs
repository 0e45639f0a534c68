//! `pilot-host schema`: the printed JSON Schema matches what the validator accepts.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::{fixture, pilot_host, run, valid_fixtures, Scratch};

fn printed_schema() -> Value {
    let out = run(pilot_host().arg("schema"));
    out.expect_code(0);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("schema is not JSON: {e}\n{}", out.stdout))
}

fn schema_keys(schema: &Value, pointer: &str) -> BTreeSet<String> {
    schema
        .pointer(pointer)
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no object at {pointer}"))
        .keys()
        .cloned()
        .collect()
}

/// Returns the keys listed after "known keys:" in the problem about `field`.
fn known_keys(stderr: &str, field: &str) -> BTreeSet<String> {
    let line = stderr
        .lines()
        .find(|l| l.contains(&format!("{field}: unknown key; known keys: ")))
        .unwrap_or_else(|| panic!("no unknown-key problem for {field} in:\n{stderr}"));
    let list = line.split("known keys: ").nth(1).unwrap();
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn schema_properties_equal_the_keys_the_validator_accepts() {
    let dir = Scratch::new("schema-keys");
    let manifest = dir.write(
        "keys.yaml",
        &format!(
            "zzzzzzzz: 1\n\
             control_server: {{ zzzzzzzz: 1 }}\n\
             plugins: {{ p: {{ zzzzzzzz: 1 }} }}\n\
             processes:\n\
             \x20 - {{ name: p, path: {}, zzzzzzzz: 1, restart: {{ zzzzzzzz: 1 }} }}\n",
            fixture("bin/server").display()
        ),
    );
    let out = run(pilot_host().arg("validate").arg(&manifest));
    out.expect_code(2);
    let schema = printed_schema();
    for (field, pointer) in [
        ("`zzzzzzzz`", "/properties"),
        ("process `p`, `zzzzzzzz`", "/$defs/RawProcess/properties"),
        ("`restart.zzzzzzzz`", "/$defs/RawRestart/properties"),
        (
            "`plugins.p.zzzzzzzz`",
            "/$defs/RawPluginSettings/properties",
        ),
        (
            "`control_server.zzzzzzzz`",
            "/$defs/RawControlSettings/properties",
        ),
    ] {
        assert_eq!(
            schema_keys(&schema, pointer),
            known_keys(&out.stderr, field),
            "{pointer} versus the validator's keys for {field}"
        );
    }
    let required: Vec<&str> = schema["$defs"]["RawProcess"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, ["name", "path"]);
}

#[test]
fn valid_fixtures_match_the_schema_and_invalid_ones_do_not() {
    let schema = printed_schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    for file in valid_fixtures() {
        let doc = pilot_host::manifest::source::read(&file).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
    }
    for name in [
        "unknown-top-level-key.yaml",
        "unknown-key-typo.yaml",
        "restart-unknown-key.yaml",
        "wrong-types.yaml",
        "wrong-types.json",
        "shutdown-strategy-unknown.yaml",
        "affinity-both-spellings.yaml",
        "affinity-negative.yaml",
        "name-missing.yaml",
        "path-missing.yaml",
        "processes-missing.yaml",
        "processes-empty.yaml",
        "top-level-list.yaml",
    ] {
        let doc = pilot_host::manifest::source::read(&fixture(&format!("invalid/{name}"))).unwrap();
        assert!(
            !validator.is_valid(&doc),
            "{name} should not match the schema"
        );
    }
}
