//! Golden tests of manifest validation.
//!
//! Every manifest under `fixtures/invalid/` must fail to load with exactly the text of the `.err` file
//! beside it; every manifest under `fixtures/valid/` must load and survive a YAML and a JSON round trip.
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the `.err` files (review the diff!).

use std::path::{Path, PathBuf};

use pilot_host::manifest::{self, Catalog};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new("tests/fixtures").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                // `.toml` is not a manifest format: its fixtures prove the extension is rejected.
                Some("yaml" | "yml" | "json" | "toml")
            )
        })
        .collect();
    files.sort();
    files
}

/// Replaces what differs between machines and checkouts with placeholders.
fn normalize(text: &str) -> String {
    let fixtures = std::fs::canonicalize("tests/fixtures").unwrap();
    let max_cpu = manifest::cpu_count() - 1;
    text.replace(&fixtures.display().to_string(), "<fixtures>")
        .replace(&format!("(CPUs 0 to {max_cpu})"), "(CPUs 0 to <max>)")
}

#[test]
fn invalid_manifests_fail_with_their_golden_errors() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let files = fixtures("invalid");
    assert!(
        files.len() >= 30,
        "want at least 30 invalid fixtures, got {}",
        files.len()
    );
    let mut mismatches = Vec::new();
    for file in &files {
        let golden = file.with_extension(format!(
            "{}.err",
            file.extension().unwrap().to_str().unwrap()
        ));
        let got = match manifest::load(file, &Catalog::default()) {
            Ok(_) => "<loaded without error>\n".to_string(),
            Err(e) => format!("{}\n", normalize(&e.to_string())),
        };
        if update {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| format!("<missing {}>\n", golden.display()));
        if want != got {
            mismatches.push(format!(
                "{}\n--- want\n{want}--- got\n{got}",
                file.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} fixtures differ:\n\n{}",
        mismatches.len(),
        files.len(),
        mismatches.join("\n")
    );
}

/// What the valid fixtures may name beyond the built-ins: Process Pilot's README example runs its
/// control server `my_server`, which a plugin would provide.
fn catalog() -> Catalog {
    Catalog {
        control_plugins: ["my_server".to_string()].into(),
        ..Catalog::default()
    }
}

#[test]
fn valid_manifests_load_and_round_trip() {
    let files = fixtures("valid");
    assert!(!files.is_empty());
    for file in files {
        let loaded = manifest::load(&file, &catalog())
            .unwrap_or_else(|e| panic!("{} should load: {e}", file.display()));
        let raw = &loaded.manifest.raw;
        let dir = file.parent().unwrap();
        for (ext, text) in [
            ("yaml", serde_yaml::to_string(raw).unwrap()),
            ("json", serde_json::to_string_pretty(raw).unwrap()),
        ] {
            let copy = dir.join(format!(
                ".roundtrip-{}.{ext}",
                file.file_stem().unwrap().to_string_lossy()
            ));
            std::fs::write(&copy, &text).unwrap();
            let again = manifest::load(&copy, &catalog());
            std::fs::remove_file(&copy).unwrap();
            let again = again
                .unwrap_or_else(|e| panic!("{} round trip via {ext}: {e}\n{text}", file.display()));
            assert_eq!(
                again.manifest.processes,
                loaded.manifest.processes,
                "{} via {ext}",
                file.display()
            );
            assert_eq!(&again.manifest.raw, raw, "{} via {ext}", file.display());
        }
    }
}
