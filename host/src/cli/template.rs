//! `wasio adapter new`: a starting project for an adapter of one's own. Each language's
//! project is our own adapter of that language (`guest-adapters/json-*`, the
//! `wasio-json` protocol), so a new project passes `wasio adapter check` as written;
//! only names and the WIT path change.

use std::path::Path;

use anyhow::{Context, bail};

/// The languages a project can be started in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

const WIT: &str = include_str!("../../../wit/adapter.wit");
const PROTOCOL: &str = include_str!("../../../guest-adapters/json-protocol.md");

/// A project's files: (path, contents); `write` fills in names and the WIT path.
fn files(lang: Lang) -> Vec<(&'static str, &'static str)> {
    match lang {
        Lang::Rust => vec![
            ("Cargo.toml", RUST_MANIFEST),
            (
                "src/lib.rs",
                include_str!("../../../guest-adapters/json-rust/src/lib.rs"),
            ),
            (".gitignore", "target/\n"),
        ],
        Lang::Python => vec![
            (
                "app.py",
                include_str!("../../../guest-adapters/json-python/app.py"),
            ),
            (
                "build.sh",
                include_str!("../../../guest-adapters/json-python/build.sh"),
            ),
            (
                "requirements.txt",
                include_str!("../../../guest-adapters/json-python/requirements.txt"),
            ),
            (
                ".gitignore",
                include_str!("../../../guest-adapters/json-python/.gitignore"),
            ),
        ],
        Lang::Js => vec![
            (
                "adapter.js",
                include_str!("../../../guest-adapters/json-js/adapter.js"),
            ),
            (
                "build.sh",
                include_str!("../../../guest-adapters/json-js/build.sh"),
            ),
            (
                "package.json",
                include_str!("../../../guest-adapters/json-js/package.json"),
            ),
            (
                "package-lock.json",
                include_str!("../../../guest-adapters/json-js/package-lock.json"),
            ),
            (
                ".gitignore",
                include_str!("../../../guest-adapters/json-js/.gitignore"),
            ),
        ],
    }
}

/// The Rust project stands alone: crates.io dependencies only, its own workspace.
const RUST_MANIFEST: &str = r#"[package]
name = "NAME"
version = "0.1.0"
edition = "2024"

[lib]
name = "CRATE"
crate-type = ["cdylib"]

[dependencies]
base64 = "0.22"
serde = { version = "1", features = ["derive"] }
serde_json = "1"
wit-bindgen = "0.63"

[profile.release]
opt-level = "s"
lto = true

# Not part of any enclosing workspace.
[workspace]
"#;

/// Writes the project for `name` into `dir` (which must not exist or be empty);
/// returns what to do next.
pub fn write(name: &str, lang: Lang, dir: &Path) -> anyhow::Result<String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || !name.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        bail!("{name:?}: a name is a letter, then letters, digits, `-` or `_`");
    }
    if dir.exists()
        && dir
            .read_dir()
            .with_context(|| format!("{}: cannot read", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{}: exists and is not empty", dir.display());
    }
    let crate_name = name.replace('-', "_");
    // Only the WIT path and package names change; the code is ours as it is.
    let fill = |path: &str, text: &str| match path {
        "Cargo.toml" => text.replace("NAME", name).replace("CRATE", &crate_name),
        "package.json" | "package-lock.json" => text.replace("wasio-adapter-json-js", name),
        _ => text
            .replace("../../wit", "wit")
            .replace("guest-adapters/json-protocol.md", "PROTOCOL.md"),
    };
    let mut all = files(lang);
    all.push(("wit/adapter.wit", WIT));
    all.push(("PROTOCOL.md", PROTOCOL));
    for (path, text) in all {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create", parent.display()))?;
        }
        let text = fill(path, text);
        std::fs::write(&target, text)
            .with_context(|| format!("{}: cannot write", target.display()))?;
    }
    let wasm = format!("{crate_name}.wasm");
    let build = match lang {
        Lang::Rust => format!(
            "rustup target add wasm32-wasip2\ncargo build --release --target wasm32-wasip2\ncp target/wasm32-wasip2/release/{wasm} ."
        ),
        Lang::Python | Lang::Js => format!("bash build.sh {wasm}"),
    };
    Ok(format!(
        "next, in {dir}:\n{build}\nwasio adapter check {wasm}\n\nthen set `[adapter] wasm = \"{dir}/{wasm}\"` in your config, or hot-swap a running node:\nwasio adapter swap {dir}/{wasm}",
        dir = dir.display()
    ))
}
