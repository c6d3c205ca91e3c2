//! What a component is, against the contract: the WIT package it was built for, the
//! guest functions it exports, the imports it needs. The loader refuses a component on
//! the first finding that fails; `wasio adapter check` prints them all. Each finding is a
//! sentence an author who never read wasmtime's errors can act on.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::{PACKAGE, VERSION, builtin, sha256_hex};
use crate::config::Capability;

/// One line of the contract report.
#[derive(Clone, Debug)]
pub struct Finding {
    /// What was looked at (`component`, `targets`, `exports`, `imports`, ...).
    pub what: &'static str,
    /// Whether it fits.
    pub ok: bool,
    /// What was found; when it does not fit, what to do, naming the component.
    pub text: String,
}

impl Finding {
    pub(crate) fn fail(what: &'static str, text: String) -> Finding {
        Finding {
            what,
            ok: false,
            text,
        }
    }
}

/// Every finding on `bytes` (named `source`), for the conformance kit. Never fails: a
/// problem is a finding. The datasource it needs is reported, not judged.
pub(crate) fn inspect(source: &str, bytes: &[u8]) -> Vec<Finding> {
    let component = match super::compile::component(source, &sha256_hex(bytes), bytes) {
        Ok(c) => c,
        Err(finding) => return vec![finding],
    };
    let mut out = vec![Finding {
        what: "component",
        ok: true,
        text: format!("{} KiB", bytes.len().div_ceil(1024)),
    }];
    out.extend(
        check(source, &component, None)
            .unwrap_or_else(|e| vec![Finding::fail("runtime", format!("{e:#}"))]),
    );
    out
}

/// The findings on a compiled component: the contract version, the `guest` export, its
/// imports, and either the capabilities `granted` (the loader) or the datasource it
/// needs (the kit).
pub(crate) fn check(
    source: &str,
    component: &Component,
    granted: Option<&[Capability]>,
) -> anyhow::Result<Vec<Finding>> {
    let engine = super::engine()?;
    let mut out = Vec::new();
    let mut say = |what, ok, text: String| out.push(Finding { what, ok, text });
    let ty = component.component_type();

    let wanted = format!("{PACKAGE}/guest@");
    let exports: Vec<(String, ComponentItem)> = ty
        .exports(engine)
        .map(|(n, i)| (n.to_string(), i.ty))
        .collect();
    match exports.iter().find(|(n, _)| n.starts_with(&wanted)) {
        None => {
            let ours = exports
                .iter()
                .any(|(n, _)| n.starts_with(&format!("{PACKAGE}/")));
            say(
                "exports",
                false,
                format!(
                    "{source}: does not export `{PACKAGE}/guest` (it exports: {}): implement the `guest` interface of wit/adapter.wit and export it from your world{}",
                    list(exports.iter().map(|(n, _)| n.as_str())),
                    if ours {
                        ""
                    } else {
                        " — is it a wasio adapter? build it against wit/ of this repository"
                    }
                ),
            )
        }
        Some((name, item)) => {
            let version = &name[wanted.len()..];
            if !compatible(version, VERSION) {
                say(
                    "targets",
                    false,
                    format!(
                        "{source}: built against {PACKAGE}@{version}, but this host speaks {PACKAGE}@{VERSION} (a compatible version is {PACKAGE}@{}): regenerate your bindings from this host's wit/",
                        compat_range(VERSION)
                    ),
                );
            } else {
                say("targets", true, format!("{PACKAGE}@{version}"));
            }
            let have = functions(engine, item);
            let missing: Vec<&str> = reference_functions()
                .iter()
                .filter(|f| !have.contains(*f))
                .map(String::as_str)
                .collect();
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
                        "{source}: `guest` lacks {}: every function of the interface must be exported",
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
    let mut ungranted = Vec::new();
    for (name, item) in ty.imports(engine) {
        if let Some(rest) = name.strip_prefix(&format!("{PACKAGE}/")) {
            let interface = rest.split('@').next().unwrap_or(rest).to_string();
            let needs = match interface.as_str() {
                "pubsub" => Some(Capability::PubSub),
                "docstore" => Some(Capability::DocStore),
                "notify" => Some(Capability::Notify),
                _ => None,
            };
            if let (Some(cap), Some(granted)) = (needs, granted)
                && matches!(item.ty, ComponentItem::ComponentInstance(_))
                && !granted.contains(&cap)
            {
                ungranted.push((name.to_string(), cap));
            }
            ours.push(interface);
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
                "{source}: imports {}, which this host does not provide: a guest reaches the world only through wit/adapter.wit (and sandboxed WASI)",
                list(foreign.iter().map(String::as_str))
            ),
        );
    }
    match granted {
        Some(_) => {
            for (name, cap) in ungranted {
                say(
                    "grants",
                    false,
                    format!(
                        "{source}: imports `{name}`, a capability the config does not grant (set [adapter] datasource to a {} datasource)",
                        match cap {
                            Capability::PubSub => "`redis`, `nats` or `memory`",
                            Capability::DocStore => "`mongodb`",
                            Capability::Notify => "`postgres`",
                        }
                    ),
                );
            }
        }
        None => {
            let datasource = if ours.iter().any(|i| i == "pubsub") {
                "pub/sub (Redis, or the in-memory bus)"
            } else if ours.iter().any(|i| i == "docstore") {
                "MongoDB"
            } else if ours.iter().any(|i| i == "notify") {
                "PostgreSQL"
            } else {
                "none: a single-node adapter"
            };
            say("datasource", true, datasource.to_string());
        }
    }
    Ok(out)
}

/// Names of the functions of the `guest` export of the built-in local adapter: what
/// every adapter must export.
fn reference_functions() -> &'static BTreeSet<String> {
    static REFERENCE: OnceLock<BTreeSet<String>> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let (Ok(engine), Some(bytes)) = (super::engine(), builtin("local")) else {
            return BTreeSet::new();
        };
        // Not on disk (the reference is no component a user loaded), but shared in
        // memory with a node that runs `builtin:local` itself.
        let sha256 = sha256_hex(bytes);
        let Ok(c) = super::compile::compiled(&sha256, || Component::new(engine, bytes)) else {
            return BTreeSet::new();
        };
        let ty = c.component_type();
        let found = ty
            .exports(engine)
            .find(|(n, _)| n.starts_with(&format!("{PACKAGE}/guest@")))
            .map(|(_, item)| functions(engine, &item.ty));
        found.unwrap_or_default()
    })
}

fn functions(engine: &Engine, item: &ComponentItem) -> BTreeSet<String> {
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

/// Semver compatibility as cargo reads it: same major, or same minor under 1.0.
fn compatible(have: &str, need: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split(['.', '-', '+']);
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    match (parse(have), parse(need)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

fn compat_range(v: &str) -> String {
    let parts: Vec<&str> = v.split('.').collect();
    if parts.first() == Some(&"0") {
        format!("0.{}.x", parts[1])
    } else {
        format!("{}.x", parts[0])
    }
}

#[cfg(test)]
mod tests {
    use super::compatible;

    #[test]
    fn semver_compatibility() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.3", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("1.0.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("2.0.0", "1.0.0"));
        assert!(!compatible("garbage", "0.1.0"));
    }
}
