//! `plugin check --format sarif`: the findings as a SARIF 2.1.0 log, for code-scanning dashboards.
//! One run; one rule per kind of finding ([`RULES`]); one result per finding, located at the plugin
//! file; one artifact per file checked.

use serde_json::{json, Value};

use super::report::{Report, RULES};

/// Returns the SARIF 2.1.0 log of `reports`.
pub fn log(reports: &[Report]) -> Value {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|(id, name, text)| {
            json!({
                "id": id,
                "name": name,
                "shortDescription": { "text": text },
                "defaultConfiguration": { "level": "error" },
            })
        })
        .collect();
    let mut results = Vec::new();
    let mut artifacts = Vec::new();
    for (index, r) in reports.iter().enumerate() {
        let uri = uri(&r.file.to_string_lossy());
        artifacts.push(json!({ "location": { "uri": uri }, "length": r.size_bytes }));
        for f in &r.findings {
            let rule_index = RULES.iter().position(|(id, ..)| *id == f.rule).unwrap_or(0);
            results.push(json!({
                "ruleId": f.rule,
                "ruleIndex": rule_index,
                "level": "error",
                "message": { "text": format!("{}: {}", r.who(), f.message) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri, "index": index },
                        // The whole component: a finding is about the plugin, not a part of it.
                        "region": { "byteOffset": 0, "byteLength": r.size_bytes },
                    }
                }],
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
