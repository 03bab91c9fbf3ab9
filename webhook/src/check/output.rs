//! `check` output: a verdict per object (text) or a JSON array.

use std::io::Write;

use super::Report;

/// ` container "name"` when a finding is about one container, else nothing.
fn container_suffix(container: Option<&str>) -> String {
    container
        .map(|c| format!(" container {c:?}"))
        .unwrap_or_default()
}

pub fn text(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    for o in &report.objects {
        let ns = o
            .namespace
            .as_deref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default();
        let verdict = match (&o.skipped, o.allowed) {
            (Some(reason), _) => format!("SKIPPED ({reason})"),
            (None, true) if o.violations.is_empty() && o.warnings.is_empty() => {
                "ALLOWED".to_string()
            }
            (None, true) => format!(
                "ALLOWED with {} warning(s)",
                o.violations.len() + o.warnings.len()
            ),
            (None, false) => {
                let denying = o.violations.iter().filter(|v| v.mode == "enforce").count();
                format!("DENIED ({denying} violation(s))")
            }
        };
        writeln!(out, "{}: {} {ns}{}: {verdict}", o.source, o.kind, o.name)?;
        for v in &o.violations {
            let marker = if v.mode == "enforce" {
                "error"
            } else {
                "warning"
            };
            let container = container_suffix(v.container.as_deref());
            writeln!(
                out,
                "  {marker} [{}]{container} ({}): {}",
                v.policy, v.field, v.message
            )?;
            if !v.hint.is_empty() {
                writeln!(out, "      fix: {}", v.hint)?;
            }
        }
        for w in &o.warnings {
            let container = container_suffix(w.container.as_deref());
            writeln!(
                out,
                "  warning [{}]{container} ({}): {}",
                w.policy, w.field, w.message
            )?;
        }
    }
    let denied = report.objects.iter().filter(|o| !o.allowed).count();
    writeln!(
        out,
        "\n{} object(s) checked: {} allowed, {denied} denied; {} object(s) of other kinds ignored; {} error(s)",
        report.objects.len(),
        report.objects.len() - denied,
        report.ignored.len(),
        report.errors.len()
    )
}

pub fn json(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &report.objects)?;
    writeln!(out)
}
