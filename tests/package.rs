//! The published crate's documents agree with its manifest: every Cargo feature (but `default`)
//! has exactly one row in the README's feature table and in the crate docs' table (src/lib.rs),
//! and neither table names a feature Cargo.toml does not define; the license files are there
//! and in the package.

use std::collections::BTreeMap;
use std::path::Path;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

/// The feature names of Cargo.toml's `[features]` table, without `default`.
fn cargo_features(manifest: &str) -> Vec<String> {
    let mut in_features = false;
    let mut names = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_features = line == "[features]";
            continue;
        }
        if !in_features || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, _)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim().trim_matches('"');
        if name != "default" {
            names.push(name.to_owned());
        }
    }
    names
}

/// The feature names of the first markdown table after the heading `heading`, with how many
/// rows name each: the first cell of each row, in backticks.
fn table_features<'a>(
    lines: impl Iterator<Item = &'a str>,
    heading: &str,
) -> BTreeMap<String, usize> {
    let mut lines = lines.skip_while(|l| !l.trim_end().starts_with(heading));
    assert!(lines.next().is_some(), "no heading {heading:?}");
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in lines {
        let line = line.trim();
        if !line.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        in_table = true;
        let first = line.trim_start_matches('|').split('|').next().unwrap_or("");
        let first = first.trim();
        if let Some(name) = first.strip_prefix('`').and_then(|f| f.strip_suffix('`')) {
            *rows.entry(name.to_owned()).or_insert(0) += 1;
        }
    }
    rows
}

fn check(document: &str, features: &[String], rows: &BTreeMap<String, usize>) -> Vec<String> {
    let mut problems = Vec::new();
    for feature in features {
        match rows.get(feature) {
            None => problems.push(format!("{document}: no row for feature `{feature}`")),
            Some(&n) if n > 1 => {
                problems.push(format!("{document}: {n} rows for feature `{feature}`"))
            }
            Some(_) => {}
        }
    }
    for name in rows.keys() {
        if !features.contains(name) {
            problems.push(format!(
                "{document}: a row for `{name}`, which Cargo.toml does not define"
            ));
        }
    }
    problems
}

fn features() -> Vec<String> {
    let features = cargo_features(&read("Cargo.toml"));
    assert!(
        features.iter().any(|f| f == "https"),
        "the manifest parser found no `https` feature: {features:?}"
    );
    features
}

#[test]
fn the_readme_feature_table_lists_each_cargo_feature_once() {
    let readme = read("README.md");
    let rows = table_features(readme.lines(), "## Feature flags");
    let problems = check("README.md", &features(), &rows);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_crate_docs_feature_table_lists_each_cargo_feature_once() {
    let lib = read("src/lib.rs");
    let docs = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l));
    let rows = table_features(docs, "# Feature flags");
    let problems = check("src/lib.rs", &features(), &rows);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_catches_a_missing_a_doubled_and_an_unknown_feature() {
    let table = "## Feature flags\n\n| feature | x |\n| --- | --- |\n| `a` | 1 |\n| `a` | 2 |\n| `zzz` | 3 |\n\nafter\n| `b` | not in the table |\n";
    let rows = table_features(table.lines(), "## Feature flags");
    let features = vec!["a".to_owned(), "b".to_owned()];
    let problems = check("t", &features, &rows);
    assert_eq!(
        problems,
        vec![
            "t: 2 rows for feature `a`".to_owned(),
            "t: no row for feature `b`".to_owned(),
            "t: a row for `zzz`, which Cargo.toml does not define".to_owned(),
        ]
    );
    let manifest = "[package]\nname = \"x\"\n[features]\ndefault = [\"a\"]\n# a comment\na = []\nb = [\"dep:c\"]\n[dependencies]\nc = \"1\"\n";
    assert_eq!(cargo_features(manifest), vec!["a", "b"]);
}

/// The license files Cargo.toml's `license = "MIT OR Apache-2.0"` promises are at the root
/// and go into the published package.
#[test]
fn the_license_files_are_there_and_in_the_package() {
    let manifest = read("Cargo.toml");
    assert!(
        manifest.contains(r#"license = "MIT OR Apache-2.0""#),
        "the license changed: update the license files and this test"
    );
    let mit = read("LICENSE-MIT");
    assert!(mit.starts_with("MIT License\n\nCopyright (c) The douyin-auth developers\n"));
    assert!(mit.contains("Permission is hereby granted, free of charge"));
    let apache = read("LICENSE-APACHE");
    let words = apache.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.starts_with("Apache License Version 2.0, January 2004"));
    assert!(apache.contains("END OF TERMS AND CONDITIONS"));
    assert!(apache.contains("Copyright The douyin-auth developers"));

    let out = std::process::Command::new(env!("CARGO"))
        .args(["package", "--list", "--allow-dirty", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo package --list: {stderr}");
    let files = String::from_utf8(out.stdout).unwrap();
    for license in ["LICENSE-MIT", "LICENSE-APACHE"] {
        assert!(files.lines().any(|f| f == license), "{license}: {files}");
    }
}
