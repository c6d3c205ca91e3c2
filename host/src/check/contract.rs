//! What a component is, against the contract: the WIT package it was built for, the
//! guest functions it exports, the imports it needs. Each finding is a sentence an
//! author who never read wasmtime's errors can act on.

use std::collections::BTreeSet;

use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::runtime::{PACKAGE, Runtime, VERSION};

/// One line of the contract report.
pub struct Finding {
    pub what: &'static str,
    pub ok: bool,
    pub text: String,
}

/// Inspects `bytes` (named `source`). Never fails: a problem is a finding.
pub fn inspect(source: &str, bytes: &[u8]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut say = |what, ok, text: String| out.push(Finding { what, ok, text });
    let rt = match Runtime::global() {
        Ok(rt) => rt,
        Err(e) => {
            say("runtime", false, format!("{e:#}"));
            return out;
        }
    };
    let engine = rt.engine();
    let component = match Component::new(engine, bytes) {
        Ok(c) => c,
        Err(e) if bytes.starts_with(b"\0asm\x01\0\0\0") => {
            say(
                "component",
                false,
                format!(
                    "{source} is a core wasm module, not a component: build for wasm32-wasip2 (Rust), use componentize-py / componentize-js, or run `wasm-tools component new` ({e})"
                ),
            );
            return out;
        }
        Err(e) => {
            say(
                "component",
                false,
                format!("{source} is not a WebAssembly component: {e}"),
            );
            return out;
        }
    };
    say(
        "component",
        true,
        format!("{} KiB", bytes.len().div_ceil(1024)),
    );
    let ty = component.component_type();

    // The guest export, by the functions the built-in local adapter exports.
    let reference = reference_functions(rt);
    let wanted = format!("{PACKAGE}/guest@");
    let exports: Vec<(String, ComponentItem)> = ty
        .exports(engine)
        .map(|(n, i)| (n.to_string(), i.ty))
        .collect();
    match exports.iter().find(|(n, _)| n.starts_with(&wanted)) {
        None => say(
            "exports",
            false,
            format!(
                "no `{PACKAGE}/guest` export (it exports: {}): implement the `guest` interface of wit/adapter.wit and export it from your world",
                list(exports.iter().map(|(n, _)| n.as_str()))
            ),
        ),
        Some((name, item)) => {
            let version = &name[wanted.len()..];
            let have = functions(engine, item);
            let missing: Vec<&str> = reference
                .iter()
                .filter(|f| !have.contains(*f))
                .map(String::as_str)
                .collect();
            if !crate::runtime::compatible(version, VERSION) {
                say(
                    "targets",
                    false,
                    format!(
                        "built against {PACKAGE}@{version}; this host speaks {PACKAGE}@{VERSION}: regenerate your bindings from this host's wit/"
                    ),
                );
            } else {
                say("targets", true, format!("{PACKAGE}@{version}"));
            }
            if missing.is_empty() {
                say(
                    "exports",
                    true,
                    format!("`guest`: all {} functions", have.len()),
                );
            } else {
                say(
                    "exports",
                    false,
                    format!(
                        "`guest` lacks {}: every function of the interface must be exported",
                        list(missing.into_iter())
                    ),
                );
            }
        }
    }

    // Imports: ours, WASI (sandboxed), or something this host cannot give.
    let mut ours = Vec::new();
    let mut wasi = 0;
    let mut foreign = Vec::new();
    for (name, _) in ty.imports(engine) {
        if let Some(rest) = name.strip_prefix(&format!("{PACKAGE}/")) {
            ours.push(rest.split('@').next().unwrap_or(rest).to_string());
        } else if name.starts_with("wasi:") {
            wasi += 1;
        } else {
            foreign.push(name.to_string());
        }
    }
    if foreign.is_empty() {
        say(
            "imports",
            true,
            format!(
                "{}{}",
                list(ours.iter().map(String::as_str)),
                if wasi > 0 {
                    format!(", and {wasi} WASI interfaces (sandboxed: no files, no network)")
                } else {
                    String::new()
                }
            ),
        );
    } else {
        say(
            "imports",
            false,
            format!(
                "imports {}, which this host does not provide: a guest reaches the world only through wit/adapter.wit (and sandboxed WASI)",
                list(foreign.iter().map(String::as_str))
            ),
        );
    }
    let datasource = if ours.iter().any(|i| i == "pubsub") {
        "pub/sub (Redis, or the in-memory bus)"
    } else if ours.iter().any(|i| i == "docstore") {
        "MongoDB"
    } else {
        "none: a single-node adapter"
    };
    say("datasource", true, datasource.to_string());
    out
}

/// Names of the functions of the `guest` export of the built-in local adapter.
fn reference_functions(rt: &Runtime) -> BTreeSet<String> {
    let engine = rt.engine();
    let Some(bytes) = crate::adapter::builtin("local") else {
        return BTreeSet::new();
    };
    let Ok(c) = Component::new(engine, bytes) else {
        return BTreeSet::new();
    };
    let ty = c.component_type();
    let found = ty
        .exports(engine)
        .find(|(n, _)| n.starts_with(&format!("{PACKAGE}/guest@")))
        .map(|(_, item)| functions(engine, &item.ty));
    found.unwrap_or_default()
}

fn functions(engine: &wasmtime::Engine, item: &ComponentItem) -> BTreeSet<String> {
    match item {
        ComponentItem::ComponentInstance(inst) => inst
            .exports(engine)
            .filter(|(_, i)| matches!(i.ty, ComponentItem::ComponentFunc(_)))
            .map(|(n, _)| n.to_string())
            .collect(),
        _ => BTreeSet::new(),
    }
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = items.map(|s| format!("`{s}`")).collect();
    if v.is_empty() {
        "nothing".into()
    } else {
        v.join(", ")
    }
}
