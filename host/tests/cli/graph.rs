//! `pilot-host graph` and `process-graph`: DOT written by us, PNG/SVG/PDF rendered by Graphviz.

use std::path::{Path, PathBuf};

use crate::support::{fixture, pilot_host, process_graph, run, Scratch};

/// Writes a manifest with one process per ready strategy and a name that DOT must quote.
fn stack(dir: &Scratch) -> PathBuf {
    dir.write(
        "stack.yaml",
        &format!(
            "processes:\n\
             \x20 - {{ name: db, path: {s}, ready_strategy: file, ready_params: {{ path: ./db.ready }} }}\n\
             \x20 - {{ name: queue, path: {s}, ready_strategy: pipe, ready_params: {{ path: ./queue.fifo }} }}\n\
             \x20 - name: api\n\
             \x20   path: {s}\n\
             \x20   timeout: 2\n\
             \x20   dependencies: [db, queue]\n\
             \x20   ready_strategy: tcp\n\
             \x20   ready_params: {{ port: 8080 }}\n\
             \x20   ready_timeout_sec: 7.5\n\
             \x20 - {{ name: 9-web.v2, path: {s}, dependencies: [api] }}\n",
            s = fixture("bin/server").display()
        ),
    )
}

/// Reads a file that a command reported writing, checking the report.
fn written(stdout: &str, want: &Path) -> Vec<u8> {
    assert_eq!(
        stdout.trim_end(),
        want.display().to_string(),
        "printed path"
    );
    std::fs::read(want).unwrap_or_else(|e| panic!("cannot read {}: {e}", want.display()))
}

/// Undoes the XML escapes Graphviz writes into SVG text.
fn unescape(svg: &str) -> String {
    svg.replace("&#45;", "-")
        .replace("&#10;", "\n")
        .replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

#[test]
fn dot_colours_nodes_by_strategy_and_points_edges_at_dependents() {
    let dir = Scratch::new("dot");
    let manifest = stack(&dir);
    let out_dir = dir.join("graphs");
    let out = run(pilot_host()
        .arg("graph")
        .arg(&manifest)
        .args(["--format", "dot", "--output-dir"])
        .arg(&out_dir));
    out.expect_code(0);
    let dot = String::from_utf8(written(&out.stdout, &out_dir.join("stack.dot"))).unwrap();
    for line in [
        "digraph processes {",
        "  \"db\" [fillcolor=\"lightgreen\"];",
        "  \"queue\" [fillcolor=\"lightyellow\"];",
        "  \"api\" [fillcolor=\"lightblue\"];",
        "  \"9-web.v2\" [fillcolor=\"white\"];",
        "  \"db\" -> \"api\";",
        "  \"queue\" -> \"api\";",
        "  \"api\" -> \"9-web.v2\";",
    ] {
        assert!(
            dot.lines().any(|l| l == line),
            "want line {line:?} in:\n{dot}"
        );
    }
    assert_eq!(
        dot.matches(" -> ").count(),
        3,
        "one edge per dependency:\n{dot}"
    );
    assert!(
        !dot.contains("tooltip"),
        "no tooltips without --detailed:\n{dot}"
    );
}

#[test]
fn detailed_svg_carries_tooltips_with_path_strategy_and_timeouts() {
    let dir = Scratch::new("svg");
    let manifest = stack(&dir);
    let out = run(pilot_host()
        .arg("graph")
        .arg(&manifest)
        .args(["--format", "svg", "--detailed", "--output-dir"])
        .arg(dir.path()));
    out.expect_code(0);
    let svg = unescape(&String::from_utf8(written(&out.stdout, &dir.join("stack.svg"))).unwrap());
    assert!(svg.contains("<svg"), "not an SVG:\n{svg}");
    let server = std::fs::canonicalize(fixture("bin/server")).unwrap();
    for want in [
        "<title>api</title>".to_string(),
        "<title>9-web.v2</title>".to_string(),
        "<title>db->api</title>".to_string(),
        format!(
            "xlink:title=\"path: {}\nready strategy: tcp 127.0.0.1:8080, ready timeout 7.5 s\nstop timeout: 2 s\nshutdown strategy: restart\"",
            server.display()
        ),
        format!(
            "xlink:title=\"path: {}\nready strategy: file {}, ready timeout 5 s\n",
            server.display(),
            dir.join("db.ready").display()
        ),
        format!("ready strategy: pipe {}", dir.join("queue.fifo").display()),
        "ready strategy: none (ready once spawned)\nstop timeout: 5 s".to_string(),
    ] {
        assert!(svg.contains(&want), "want {want:?} in:\n{svg}");
    }

    let plain = run(pilot_host()
        .arg("graph")
        .arg(&manifest)
        .args(["--format", "svg", "--output-dir"])
        .arg(dir.join("plain")));
    plain.expect_code(0);
    let svg = String::from_utf8(written(&plain.stdout, &dir.join("plain/stack.svg"))).unwrap();
    assert!(
        !svg.contains("ready strategy"),
        "tooltips without --detailed:\n{svg}"
    );
}

#[test]
fn png_and_pdf_are_real_files() {
    let dir = Scratch::new("png-pdf");
    let manifest = stack(&dir);
    for (format, magic) in [("png", &b"\x89PNG\r\n\x1a\n"[..]), ("pdf", &b"%PDF"[..])] {
        let out = run(pilot_host()
            .arg("graph")
            .arg(&manifest)
            .args(["--format", format, "--output-dir"])
            .arg(dir.path()));
        out.expect_code(0);
        let bytes = written(&out.stdout, &dir.join(&format!("stack.{format}")));
        assert!(
            bytes.starts_with(magic),
            "{format} starts with {:?}",
            &bytes[..bytes.len().min(8)]
        );
    }
}

#[test]
fn without_graphviz_images_fail_with_install_advice_but_dot_works() {
    let dir = Scratch::new("no-graphviz");
    let manifest = stack(&dir);
    let empty_path = dir.join("empty-bin");
    std::fs::create_dir(&empty_path).unwrap();

    let out = run(pilot_host()
        .env("PATH", &empty_path)
        .arg("graph")
        .arg(&manifest)
        .args(["--format", "png", "--output-dir"])
        .arg(dir.path()));
    out.expect_code(1)
        .stderr_has("Graphviz's `dot` program was not found on PATH; install Graphviz")
        .stderr_has("apt-get install graphviz")
        .stderr_has("or use `--format dot`");
    assert!(!dir.join("stack.png").exists(), "no PNG without Graphviz");

    let out = run(pilot_host()
        .env("PATH", &empty_path)
        .arg("graph")
        .arg(&manifest)
        .args(["--format", "dot", "--output-dir"])
        .arg(dir.path()));
    out.expect_code(0);
    assert!(written(&out.stdout, &dir.join("stack.dot")).starts_with(b"digraph"));
}

#[test]
fn process_graph_takes_process_pilots_command_line() {
    let dir = Scratch::new("process-graph");
    let manifest = stack(&dir);
    let out_dir = dir.join("graphs/nested");
    let out = run(process_graph()
        .arg(&manifest)
        .args(["--format", "svg", "--output-dir"])
        .arg(&out_dir)
        .arg("--detailed"));
    out.expect_code(0);
    let svg =
        unescape(&String::from_utf8(written(&out.stdout, &out_dir.join("stack.svg"))).unwrap());
    assert!(svg.contains("<title>9-web.v2</title>"), "{svg}");
    assert!(svg.contains("ready strategy: tcp 127.0.0.1:8080"), "{svg}");
}

#[test]
fn graph_of_an_invalid_manifest_exits_2() {
    let dir = Scratch::new("graph-invalid");
    let out = run(pilot_host()
        .args([
            "graph",
            "tests/fixtures/invalid/cycle-three.yaml",
            "--format",
            "dot",
            "--output-dir",
        ])
        .arg(dir.path()));
    out.expect_code(2)
        .stderr_has("dependency cycle: alpha -> beta -> gamma -> alpha");
    assert!(!dir.join("cycle-three.dot").exists());
}
