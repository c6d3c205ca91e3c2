//! Builds the guest adapters for `wasm32-wasip2` (a nested cargo with its own target
//! directory) and embeds the built-in ones, so a fresh clone needs no manual step.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest crates built with the host: (package, artifact, embedded as).
const GUESTS: &[(&str, &str, Option<&str>)] = &[
    (
        "wasio-guest-local",
        "wasio_guest_local.wasm",
        Some("local.wasm"),
    ),
    (
        "wasio-guest-redis",
        "wasio_guest_redis.wasm",
        Some("redis.wasm"),
    ),
    (
        "wasio-guest-mongodb",
        "wasio_guest_mongodb.wasm",
        Some("mongodb.wasm"),
    ),
    (
        "wasio-guest-postgres",
        "wasio_guest_postgres.wasm",
        Some("postgres.wasm"),
    ),
    // The Rust starting project of `wasio adapter new --lang rust`, built so tests find it.
    ("wasio-guest-json-rust", "json_rust.wasm", None),
    // The Rust starting project of `wasio policy new --lang rust`, likewise.
    ("wasio-policy-rust", "policy_rust.wasm", None),
    // Test doubles, built here so tests find them; never embedded.
    ("faulty", "faulty.wasm", None),
    ("future-version", "future_version.wasm", None),
    ("pubsub-user", "pubsub_user.wasm", None),
    ("broken", "broken.wasm", None),
    // An access policy (`wit/policy/policy.wit`) for the policy tests.
    ("policy-test", "policy_test.wasm", None),
    // The Redis guest built again as another component (tests/redis-next), for hot swaps.
    ("redis-next", "redis_next.wasm", None),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = root.join("target").join("guests");

    // The Rust guests only: the Python and JS ones hold a venv and node_modules.
    for dir in [
        "wit",
        "guest-adapters/cluster-protocol",
        "guest-adapters/cluster-node",
        "guest-adapters/local",
        "guest-adapters/redis",
        "guest-adapters/mongodb",
        "guest-adapters/json-rust",
        "guest-adapters/policy-rust",
        "tests/guests",
        "tests/redis-next",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for (package, _, _) in GUESTS {
        cmd.args(["-p", package]);
    }
    // The outer build's flags and target settings are for the host, not the guests.
    for (key, _) in std::env::vars() {
        if (key.starts_with("CARGO_")
            && key != "CARGO_HOME"
            && !key.starts_with("CARGO_REGISTRIES"))
            || key == "RUSTFLAGS"
            || key == "RUSTC_WORKSPACE_WRAPPER"
        {
            cmd.env_remove(&key);
        }
    }
    let status = cmd.status().expect("run cargo to build the guest adapters");
    if !status.success() {
        panic!(
            "building the guest adapters for wasm32-wasip2 failed; is the target installed? run: rustup target add wasm32-wasip2"
        );
    }

    let built = target_dir.join("wasm32-wasip2").join("release");
    for (_, artifact, embed) in GUESTS {
        let path = built.join(artifact);
        assert!(path.exists(), "guest artifact missing: {}", path.display());
        if let Some(name) = embed {
            copy(&path, &out.join(name));
        }
    }
    // Tests look for test guests here.
    println!("cargo:rustc-env=WASIO_GUESTS_DIR={}", built.display());
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}
