//! The JSON reports of `--json` (schema `netcr.report.v1`, docs/report-schema.md): one
//! document on stdout per command, for runtimes and scripts that must not parse sentences.

use std::time::Duration;

use serde_json::{json, Value};

use super::{DiffReport, DumpSummary, NetnsRestored};

/// The schema every report names in its `schema` field; a change that removes or renames a
/// field takes a new version.
pub const SCHEMA: &str = "netcr.report.v1";

/// The fields every report has (`schema`, `command`, `elapsed_ms`), then `body`'s.
fn envelope(command: &str, elapsed: Duration, body: Value) -> Value {
    let mut doc = json!({
        "schema": SCHEMA,
        "command": command,
        "elapsed_ms": elapsed.as_secs_f64() * 1000.0,
    });
    if let (Some(doc), Value::Object(body)) = (doc.as_object_mut(), body) {
        doc.extend(body);
    }
    doc
}

/// `netcr diff --json`: whether identical, and each difference.
pub fn diff(report: &DiffReport, elapsed: Duration) -> Value {
    envelope(
        "diff",
        elapsed,
        json!({
            "image": report.image,
            "label": report.label,
            "against": report.against,
            "identical": report.identical(),
            "differences": report.differences,
        }),
    )
}

/// A warning as a record: the namespace it is about (when it is about one), its kind
/// (`ifindex_not_kept`, `warning`) and the sentence the human output prints.
fn warning(netns: Option<&str>, kind: &str, message: &str) -> Value {
    json!({"netns": netns, "kind": kind, "message": message})
}

/// `netcr dump --json`: per namespace its counts and devices; the warnings.
pub fn dump(summary: &DumpSummary, elapsed: Duration) -> Value {
    let namespaces: Vec<Value> = summary
        .namespaces
        .iter()
        .map(|n| {
            json!({
                "label": n.label,
                "counts": {
                    "links": n.links,
                    "addresses": n.addresses,
                    "routes": n.routes,
                    "rules": n.rules,
                    "neighbours": n.neighbours,
                    "nexthops": n.nexthops,
                    "nft_tables": n.nft_tables,
                    "nft_rules": n.nft_rules,
                },
                "devices": n.devices.iter().map(|(name, ifindex, kind)| json!({
                    "name": name,
                    "ifindex": ifindex,
                    "kind": if kind.is_empty() { "loopback" } else { kind.as_str() },
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    envelope(
        "dump",
        elapsed,
        json!({
            "image": summary.dir,
            "kernel_dump_ms": summary.kernel_dump.as_secs_f64() * 1000.0,
            "namespaces": namespaces,
            "warnings": summary
                .warnings
                .iter()
                .map(|w| warning(None, "warning", w))
                .collect::<Vec<_>>(),
        }),
    )
}

/// `netcr restore --json`: per namespace what was added, each device with its ifindex and
/// whether it was created or adopted; the warnings.
pub fn restore(dir: &std::path::Path, restored: &[NetnsRestored], elapsed: Duration) -> Value {
    let mut warnings = Vec::new();
    let namespaces: Vec<Value> = restored
        .iter()
        .map(|n| {
            let r = &n.report;
            for w in &r.ifindex_not_kept {
                warnings.push(warning(Some(&r.netns), "ifindex_not_kept", w));
            }
            for w in &r.warnings {
                warnings.push(warning(Some(&r.netns), "warning", w));
            }
            json!({
                "label": r.netns,
                "created": r.created_netns,
                "counts": {
                    "links": r.links,
                    "addresses": r.addresses,
                    "routes": r.routes,
                    "rules": r.rules,
                    "neighbours": r.neighbours,
                    "nexthops": r.nexthops,
                    "nft_tables": r.nft_tables,
                },
                "requests": r.requests,
                "devices": r.devices.iter().map(|(name, ifindex)| json!({
                    "name": name,
                    "ifindex": ifindex,
                    "action": if r.adopted.contains(name) { "adopted" } else { "created" },
                })).collect::<Vec<_>>(),
                "already_present": r.already_present,
            })
        })
        .collect();
    envelope(
        "restore",
        elapsed,
        json!({
            "image": dir,
            "namespaces": namespaces,
            "warnings": warnings,
        }),
    )
}

/// `netcr check --json`: each kind (`supported`, `not_supported`, `failed`) and feature.
pub fn check(report: &crate::check::CheckReport, elapsed: Duration) -> Value {
    envelope(
        "check",
        elapsed,
        json!({
            "kernel": report.kernel,
            "drivers": report.drivers,
            "kinds": report.kinds.iter().map(|(kind, support)| {
                let detail = match support {
                    crate::check::KindSupport::Supported => None,
                    crate::check::KindSupport::NotSupported(d)
                    | crate::check::KindSupport::Failed(d) => Some(d),
                };
                json!({"kind": kind, "status": support.word(), "detail": detail})
            }).collect::<Vec<_>>(),
            "features": report.features.iter().map(|(what, result)| json!({
                "feature": what,
                "status": if result.is_ok() { "supported" } else { "failed" },
                "detail": result.as_ref().err(),
            })).collect::<Vec<_>>(),
            "failed": report.failed(),
            "warnings": report.not_supported().iter().map(|k| warning(
                None,
                "kind_not_supported",
                &format!("this kernel lacks the {k} kind: images with {k} devices cannot be restored here"),
            )).collect::<Vec<_>>(),
        }),
    )
}
