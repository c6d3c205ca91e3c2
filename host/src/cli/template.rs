//! `wasio adapter new` and `wasio policy new`: a starting project of one's own. Each
//! language's project is one we ship: for an adapter, our adapter of that language
//! (`guest-adapters/json-*`, the `wasio-json` protocol), so a new project passes
//! `wasio adapter check` as written; for a policy, our example policy
//! (`guest-adapters/policy-*`). Only names and relative paths change.

use std::path::Path;

use anyhow::{Context, bail};

/// What a project is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kit {
    /// A cluster adapter (`wit/adapter.wit`).
    Adapter,
    /// An access policy (`wit/policy/policy.wit`).
    Policy,
}

/// The languages a project can be started in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// wit-bindgen, `cargo build --target wasm32-wasip2`.
    Rust,
    /// componentize-py.
    Python,
    /// componentize-qjs (QuickJS).
    Js,
}

const WIT: &str = include_str!("../../../wit/adapter.wit");
const PROTOCOL: &str = include_str!("../../../guest-adapters/json-protocol.md");
const POLICY_WIT: &str = include_str!("../../../wit/policy/policy.wit");
/// The build.sh scripts' shared part, written beside them as `toolchain/`.
const PYTHON_TOOLCHAIN: (&str, &str) = (
    "toolchain/python.sh",
    include_str!("../../../guest-adapters/toolchain/python.sh"),
);
const JS_TOOLCHAIN: (&str, &str) = (
    "toolchain/js.sh",
    include_str!("../../../guest-adapters/toolchain/js.sh"),
);

/// A project's files: (path, contents); `write` fills in names and the WIT path.
fn files(kit: Kit, lang: Lang) -> Vec<(&'static str, &'static str)> {
    match kit {
        Kit::Adapter => adapter_files(lang),
        Kit::Policy => policy_files(lang),
    }
}

fn adapter_files(lang: Lang) -> Vec<(&'static str, &'static str)> {
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
            PYTHON_TOOLCHAIN,
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
            JS_TOOLCHAIN,
        ],
    }
}

fn policy_files(lang: Lang) -> Vec<(&'static str, &'static str)> {
    match lang {
        Lang::Rust => vec![
            ("Cargo.toml", POLICY_RUST_MANIFEST),
            (
                "src/lib.rs",
                include_str!("../../../guest-adapters/policy-rust/src/lib.rs"),
            ),
            (".gitignore", "target/\n"),
        ],
        Lang::Python => vec![
            (
                "app.py",
                include_str!("../../../guest-adapters/policy-python/app.py"),
            ),
            (
                "build.sh",
                include_str!("../../../guest-adapters/policy-python/build.sh"),
            ),
            (
                "requirements.txt",
                include_str!("../../../guest-adapters/policy-python/requirements.txt"),
            ),
            (
                ".gitignore",
                include_str!("../../../guest-adapters/policy-python/.gitignore"),
            ),
            PYTHON_TOOLCHAIN,
        ],
        Lang::Js => vec![
            (
                "policy.js",
                include_str!("../../../guest-adapters/policy-js/policy.js"),
            ),
            (
                "build.sh",
                include_str!("../../../guest-adapters/policy-js/build.sh"),
            ),
            (
                "package.json",
                include_str!("../../../guest-adapters/policy-js/package.json"),
            ),
            (
                "package-lock.json",
                include_str!("../../../guest-adapters/policy-js/package-lock.json"),
            ),
            (
                ".gitignore",
                include_str!("../../../guest-adapters/policy-js/.gitignore"),
            ),
            JS_TOOLCHAIN,
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

/// The Rust policy project stands alone too.
const POLICY_RUST_MANIFEST: &str = r#"[package]
name = "NAME"
version = "0.1.0"
edition = "2024"

[lib]
name = "CRATE"
crate-type = ["cdylib"]

[dependencies]
serde_json = "1"
wit-bindgen = "0.63"

[profile.release]
opt-level = "s"
lto = true

# Not part of any enclosing workspace.
[workspace]
"#;

/// Writes the `kit` project for `name` into `dir` (which must not exist or be empty);
/// returns what to do next.
pub fn write(kit: Kit, name: &str, lang: Lang, dir: &Path) -> anyhow::Result<String> {
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
    // Where the sources find the WIT in our tree, and what they call themselves.
    let (wit_dir, (wit_doc, wit_doc_here), own_names, mut all) = match kit {
        Kit::Adapter => (
            "../../wit",
            ("wit/adapter.wit", "wit/adapter.wit"),
            &["wasio-adapter-json-js"][..],
            vec![("wit/adapter.wit", WIT), ("PROTOCOL.md", PROTOCOL)],
        ),
        Kit::Policy => (
            "../../wit/policy",
            ("wit/policy/policy.wit", "wit/policy.wit"),
            &["wasio-policy-python", "wasio-policy-js"][..],
            vec![("wit/policy.wit", POLICY_WIT)],
        ),
    };
    // Only paths and names change; the code is ours as it is.
    let fill = |path: &str, text: &str| match path {
        "Cargo.toml" => text.replace("NAME", name).replace("CRATE", &crate_name),
        _ => {
            let mut text = text
                .replace(wit_dir, "wit")
                .replace(wit_doc, wit_doc_here)
                .replace("/../toolchain/", "/toolchain/")
                .replace("guest-adapters/json-protocol.md", "PROTOCOL.md");
            for own in own_names {
                text = text.replace(own, name);
            }
            text
        }
    };
    all.extend(files(kit, lang));
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
    let dir = dir.display();
    Ok(match kit {
        Kit::Adapter => format!(
            "next, in {dir}:\n{build}\nwasio adapter check {wasm}\n\nthen set `[adapter] wasm = \"{dir}/{wasm}\"` in your config, or hot-swap a running node:\nwasio adapter swap {dir}/{wasm}"
        ),
        Kit::Policy => format!(
            "next, in {dir}:\n{build}\n\nthen name it in your config:\n[auth]\npolicy = \"{dir}/{wasm}\"\npolicy_options = {{ require = \"user\", deny_rooms = [\"secret*\", \"ops\"], deny_events = [\"forbidden\"] }}\n\nor hot-swap a running node's policy:\nwasio policy swap {dir}/{wasm} --options '{{\"require\": \"user\"}}'"
        ),
    })
}
