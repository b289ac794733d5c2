//! The JSON reports of `--json` (schema `netcr.report.v1`, docs/report-schema.md): one
//! document on stdout per command, for runtimes and scripts that must not parse sentences.

use std::time::Duration;

use serde_json::{json, Value};

use super::DiffReport;

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
