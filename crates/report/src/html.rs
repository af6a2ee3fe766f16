//! The HTML rendering: one self-contained file (inline CSS, inline SVG
//! charts, no script, no external resource), laid out for A4 print with
//! page breaks between the main sections. The askama template is
//! `templates/report.html`.

use std::fmt::Write as _;

use askama::Template;

use crate::chart::{bars, columns, escape, lines};
use crate::model::{
    AccessReview, Body, Compliance, Count, Reconciliation, Report, RunItem, Sample, Summary, Verification,
};
use crate::ReportError;

#[derive(Template)]
#[template(path = "report.html")]
struct Page<'a> {
    r: &'a Report,
    version: &'static str,
    period: String,
    summary: Option<&'a Summary>,
    compliance: Option<&'a Compliance>,
    access: Option<&'a AccessReview>,
    reconciliation: Option<&'a Reconciliation>,
    trend_chart: String,
    volume_chart: String,
    actions_chart: String,
    actors_chart: String,
    classes_chart: String,
}

/// A count as the template receives it: by value or by reference.
trait Number {
    fn value(&self) -> u64;
}
impl Number for u64 {
    fn value(&self) -> u64 {
        *self
    }
}
impl<T: Number + ?Sized> Number for &T {
    fn value(&self) -> u64 {
        (**self).value()
    }
}

trait Millis {
    fn value(&self) -> f64;
}
impl Millis for f64 {
    fn value(&self) -> f64 {
        *self
    }
}
impl<T: Millis + ?Sized> Millis for &T {
    fn value(&self) -> f64 {
        (**self).value()
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Page<'_> {
    fn n(&self, v: impl Number) -> String {
        thousands(v.value())
    }

    fn ms(&self, v: impl Millis) -> String {
        let v = v.value();
        if v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    }

    fn opt(&self, v: &Option<String>) -> String {
        v.clone().unwrap_or_else(|| "—".into())
    }

    fn count_table(&self, heading: &str, rows: &[Count]) -> String {
        if rows.is_empty() {
            return "<p>None.</p>".into();
        }
        let mut s = format!(
            "<table><thead><tr><th>{}</th><th class=\"num\">Events</th></tr></thead><tbody>",
            escape(heading)
        );
        for c in rows {
            let _ = write!(
                s,
                "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
                escape(&c.value),
                thousands(c.count)
            );
        }
        s.push_str("</tbody></table>");
        s
    }

    fn sample_table(&self, rows: &[Sample]) -> String {
        if rows.is_empty() {
            return "<p>None.</p>".into();
        }
        let mut s = String::from(
            "<table><thead><tr><th>Occurred</th><th>Log · index</th><th>Action</th><th>Actor</th><th>Targets</th><th>Outcome</th><th>Error / message</th></tr></thead><tbody>",
        );
        for e in rows {
            let detail = match (&e.error_type, &e.error_message, &e.message) {
                (Some(t), Some(m), _) => format!("{t}: {m}"),
                (Some(t), None, _) => t.clone(),
                (None, Some(m), _) => m.clone(),
                (None, None, Some(m)) => m.clone(),
                (None, None, None) => String::new(),
            };
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{} · {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&e.occurred_at),
                escape(&e.log),
                e.index,
                escape(&e.action),
                escape(e.actor.as_deref().unwrap_or("")),
                escape(&e.targets.join(", ")),
                escape(e.outcome.as_deref().unwrap_or("")),
                escape(&detail)
            );
        }
        s.push_str("</tbody></table>");
        s
    }

    fn on(&self, v: &Option<u64>) -> String {
        v.map(thousands).unwrap_or_else(|| "—".into())
    }

    fn run_table(&self, rows: &[RunItem]) -> String {
        if rows.is_empty() {
            return "<p>None.</p>".into();
        }
        // Columns no run of the period has a value for are left out.
        let violations = rows.iter().any(|r| r.violations.is_some());
        let keys = rows.iter().any(|r| r.keys_found.is_some());
        let quality = rows.iter().any(|r| r.quality_score.is_some());
        let mut s = String::from(
            "<table><thead><tr><th class=\"num\">Run</th><th>Started</th><th class=\"num\">Seconds</th><th>Kind</th><th>Outcome</th><th class=\"num\">Rows (left / right)</th><th class=\"num\">Added</th><th class=\"num\">Removed</th><th class=\"num\">Changed</th>",
        );
        if keys {
            s.push_str("<th class=\"num\">Keys found</th>");
        }
        if violations {
            s.push_str("<th class=\"num\">Violations</th>");
        }
        if quality {
            s.push_str("<th class=\"num\">Quality</th>");
        }
        s.push_str("</tr></thead><tbody>");
        for r in rows {
            let counted = match (r.left_rows, r.right_rows, r.rows) {
                (Some(l), Some(rr), _) => format!("{} / {}", thousands(l), thousands(rr)),
                (_, _, Some(n)) => thousands(n),
                (Some(l), None, None) => thousands(l),
                (None, Some(rr), None) => thousands(rr),
                (None, None, None) => "—".into(),
            };
            let outcome = if r.open {
                "running".to_string()
            } else if r.outcome == "failure" {
                format!("<span class=\"bad\">{}</span>", escape(&r.outcome))
            } else {
                escape(&r.outcome)
            };
            let _ = write!(
                s,
                "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{:.1}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
                r.id,
                escape(&r.started_at.replacen('T', " ", 1)),
                r.duration_ms as f64 / 1000.0,
                escape(&r.kind),
                outcome,
                counted,
                self.on(&r.added),
                self.on(&r.removed),
                self.on(&r.changed),
            );
            if keys {
                let _ = write!(s, "<td class=\"num\">{}</td>", self.on(&r.keys_found));
            }
            if violations {
                let _ = write!(s, "<td class=\"num\">{}</td>", self.on(&r.violations));
            }
            if quality {
                let _ = write!(
                    s,
                    "<td class=\"num\">{}</td>",
                    r.quality_score.map(|q| format!("{q:.4}")).unwrap_or_else(|| "—".into())
                );
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table>");
        s
    }

    fn verification(&self, v: &Verification) -> String {
        let yes_no = |ok: bool, yes: &str, no: &str| {
            if ok {
                format!("<span class=\"ok\">{yes}</span>")
            } else {
                format!("<span class=\"bad\">{no}</span>")
            }
        };
        let mut s = String::from("<h2>Log protection (PCI DSS 10.3)</h2><table>");
        let _ = write!(
            s,
            "<tr><th>Latest signed checkpoint</th><td>{}</td></tr>",
            yes_no(v.signature_valid, "signature valid", "signature INVALID")
        );
        match &v.last {
            Some(run) => {
                let _ = write!(
                    s,
                    "<tr><th>Last full verification</th><td>{} at {}{}{}</td></tr>",
                    yes_no(run.result == "intact", &escape(&run.result), &escape(&run.result)),
                    escape(&run.at),
                    run.checkpoint_size
                        .map(|n| format!(", checkpoint size {}", thousands(n)))
                        .unwrap_or_default(),
                    run.by.as_deref().map(|b| format!(", by {}", escape(b))).unwrap_or_default()
                );
            }
            None => s.push_str(
                "<tr><th>Last full verification</th><td><span class=\"bad\">none recorded in the system log</span></td></tr>",
            ),
        }
        let consistency = match v.consistent_with_verified {
            Some(ok) => yes_no(
                ok,
                "the verified checkpoint is a prefix of the latest (consistency proof checked)",
                "NOT consistent with the verified checkpoint",
            ),
            None => "no verified checkpoint to compare".to_string(),
        };
        let _ = write!(
            s,
            "<tr><th>Checkpoint consistency</th><td>{consistency}</td></tr></table>"
        );
        s
    }
}

pub(crate) fn render(report: &Report) -> Result<String, ReportError> {
    let (mut summary, mut compliance, mut access, mut reconciliation) = (None, None, None, None);
    let mut trend_chart = String::new();
    let (mut volume_chart, mut actions_chart, mut actors_chart, mut classes_chart) =
        (String::new(), String::new(), String::new(), String::new());
    match &report.body {
        Body::Summary(s) => {
            volume_chart = columns(&s.volume, &format!("Events per {}", s.bucket));
            actions_chart = bars(&s.top_actions, "Top actions");
            actors_chart = bars(&s.top_actors, "Top actors");
            summary = Some(&**s);
        }
        Body::Compliance(c) => {
            let rows: Vec<Count> = c
                .classes
                .iter()
                .map(|k| Count {
                    value: format!("{} {}", k.requirement, k.id.replace('_', " ")),
                    count: k.count,
                })
                .collect();
            classes_chart = bars(&rows, "Events per PCI DSS 10.2.1 class");
            compliance = Some(&**c);
        }
        Body::AccessReview(a) => access = Some(&**a),
        Body::Reconciliation(x) => {
            if !x.trend.is_empty() {
                let labels: Vec<String> = x.trend.iter().map(|p| p.started_at.clone()).collect();
                let pick = |f: fn(&crate::model::TrendPoint) -> Option<u64>| x.trend.iter().map(f).collect::<Vec<_>>();
                let mut series = vec![("differences", pick(|p| p.differences))];
                for (name, values) in [
                    ("added", pick(|p| p.added)),
                    ("removed", pick(|p| p.removed)),
                    ("changed", pick(|p| p.changed)),
                    ("keys found", pick(|p| p.keys_found)),
                ] {
                    if values.iter().any(Option::is_some) {
                        series.push((name, values));
                    }
                }
                series.retain(|(_, v)| v.iter().any(Option::is_some));
                if !series.is_empty() {
                    trend_chart = lines(&labels, &series, &format!("Differences per run of {}", x.name));
                }
            }
            reconciliation = Some(&**x);
        }
    }
    let period = match (&report.period.since, &report.period.until) {
        (Some(s), Some(u)) => format!("{s} to {u}"),
        (Some(s), None) => format!("from {s}"),
        (None, Some(u)) => format!("until {u}"),
        (None, None) => "all events".into(),
    };
    let page = Page {
        r: report,
        version: env!("CARGO_PKG_VERSION"),
        period,
        summary,
        compliance,
        access,
        reconciliation,
        trend_chart,
        volume_chart,
        actions_chart,
        actors_chart,
        classes_chart,
    };
    page.render().map_err(|e| ReportError::Render {
        format: "html",
        reason: e.to_string(),
    })
}
