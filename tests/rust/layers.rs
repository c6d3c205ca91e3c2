//! The host's layers only point down: a file of one folder of `host/src` refers to
//! (`crate::FOLDER`) its own folder and the folders below it, never above or beside.
//! `cargo test -p wasio-tests --test layers` checks it, naming each offending line.

use std::path::{Path, PathBuf};

/// Bottom first; folders on one rank know nothing of each other.
const LAYERS: &[&[&str]] = &[
    &["config"],
    &["runtime", "datasource"],
    &["capabilities"],
    &["cluster", "auth"],
    &["serve"],
    &["cli"],
];

fn rank(folder: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&folder))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The folders `line` refers to through `crate::NAME`.
fn references(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `crate::{a, b}` lists several.
        if after.starts_with('{') {
            let inner = &after[1..after.find('}').unwrap_or(after.len())];
            for part in inner.split(',') {
                let n: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                found.push(n);
            }
        } else {
            found.push(name);
        }
        rest = after;
    }
    found
}

#[test]
fn host_layers_only_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut offences = Vec::new();
    let mut folders = std::collections::BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let Some(folder) = rel.iter().next().filter(|_| rel.components().count() > 1) else {
            continue; // lib.rs and main.rs sit above every layer
        };
        let folder = folder.to_str().unwrap();
        folders.insert(folder.to_string());
        let mine = rank(folder).unwrap_or_else(|| panic!("{folder}/ is in no layer"));
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for target in references(line) {
                let Some(theirs) = rank(&target) else {
                    continue; // not a folder (a root item)
                };
                if target != folder && theirs >= mine {
                    offences.push(format!(
                        "{}:{}: {folder}/ refers to {target}/: {}",
                        rel.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    let every: Vec<&str> = LAYERS.iter().flat_map(|l| l.iter().copied()).collect();
    for f in &every {
        assert!(
            folders.contains(*f),
            "no folder {f}/ in host/src: update LAYERS"
        );
    }
    assert!(
        offences.is_empty(),
        "imports that point up or across:\n{}",
        offences.join("\n")
    );
}

#[test]
fn the_reader_sees_every_kind_of_reference() {
    assert_eq!(references("use crate::cluster::Adapter;"), ["cluster"]);
    assert_eq!(
        references("use crate::{config::Limits, runtime::Guard};"),
        ["config", "runtime"]
    );
    assert_eq!(
        references("let x = crate::serve::server::app(a, crate::cli::kit::run());"),
        ["serve", "cli"]
    );
}
