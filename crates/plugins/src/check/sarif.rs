//! `plugin check --format sarif`: the findings as a SARIF 2.1.0 log, for code-scanning dashboards.
//! One run; one rule per kind of finding ([`RULES`]); one result per finding, located at the plugin
//! file; one artifact per file checked. What a control plugin did within its grants (control calls,
//! outgoing requests) follows as results of the rule [`GRANTED`] of kind `informational` and level
//! `none`: listed for reviewers, never a finding.

use serde_json::{json, Value};

use super::report::{Report, RULES};

/// The rule of what a control plugin did within its grants: id, name, description.
pub const GRANTED: (&str, &str, &str) = (
    "granted-access",
    "GrantedAccess",
    "A control plugin made a control call or an HTTP request its grants allow (answered by the check's stand-in, never carried out); informational.",
);

/// Returns the SARIF 2.1.0 log of `reports`.
pub fn log(reports: &[Report]) -> Value {
    let rule = |(id, name, text): &(&str, &str, &str), level: &str| {
        json!({
            "id": id,
            "name": name,
            "shortDescription": { "text": text },
            "defaultConfiguration": { "level": level },
        })
    };
    let mut rules: Vec<Value> = RULES.iter().map(|r| rule(r, "error")).collect();
    rules.push(rule(&GRANTED, "none"));
    let mut results = Vec::new();
    let mut artifacts = Vec::new();
    for (index, r) in reports.iter().enumerate() {
        let uri = uri(&r.file.to_string_lossy());
        artifacts.push(json!({ "location": { "uri": uri }, "length": r.size_bytes }));
        // The whole component: a finding is about the plugin, not a part of it.
        let locations = json!([{
            "physicalLocation": {
                "artifactLocation": { "uri": uri, "index": index },
                "region": { "byteOffset": 0, "byteLength": r.size_bytes },
            }
        }]);
        for f in &r.findings {
            let rule_index = RULES.iter().position(|(id, ..)| *id == f.rule).unwrap_or(0);
            results.push(json!({
                "ruleId": f.rule,
                "ruleIndex": rule_index,
                "level": "error",
                "message": { "text": format!("{}: {}", r.who(), f.message) },
                "locations": locations,
            }));
        }
        for u in &r.granted {
            results.push(json!({
                "ruleId": GRANTED.0,
                "ruleIndex": RULES.len(),
                "kind": "informational",
                "level": "none",
                "message": { "text": format!("{}: {u}", r.who()) },
                "locations": locations,
            }));
        }
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "pilot-host plugin check",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "artifacts": artifacts,
            "results": results,
        }],
    })
}

/// Returns `path` as a URI reference: relative paths stay relative, absolute ones become `file://`;
/// bytes outside the unreserved set are percent-encoded.
fn uri(path: &str) -> String {
    let mut out = String::new();
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(uri("target/a b.wasm"), "target/a%20b.wasm");
        assert_eq!(uri("/tmp/x.wasm"), "file:///tmp/x.wasm");
    }
}
