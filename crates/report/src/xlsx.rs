//! The XLSX rendering: a "Report" sheet with the key figures and the
//! checkpoint, then one sheet per table, each with a frozen, filtered
//! header row and number formats, and native Excel charts beside the
//! series and rankings.

use rust_xlsxwriter::{Chart, ChartType, ExcelDateTime, Format as CellFormat, Workbook, Worksheet, XlsxError};

use crate::model::{Body, Count, Report, Sample, Verification};
use crate::ReportError;

enum Cell {
    Text(String),
    Int(u64),
    Ms(f64),
    Time(String),
    /// Nothing written: a count the run does not carry.
    Empty,
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::Text(s.to_string())
    }
}
impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::Text(s)
    }
}
impl From<&Option<String>> for Cell {
    fn from(s: &Option<String>) -> Cell {
        Cell::Text(s.clone().unwrap_or_default())
    }
}
impl From<u64> for Cell {
    fn from(n: u64) -> Cell {
        Cell::Int(n)
    }
}
impl From<Option<u64>> for Cell {
    fn from(n: Option<u64>) -> Cell {
        n.map_or(Cell::Empty, Cell::Int)
    }
}

struct Formats {
    header: CellFormat,
    int: CellFormat,
    ms: CellFormat,
    time: CellFormat,
}

fn err(e: XlsxError) -> ReportError {
    ReportError::Render {
        format: "xlsx",
        reason: e.to_string(),
    }
}

/// Write `rows` under `headers` on a new sheet `name`: header frozen and
/// filtered, columns sized. Returns the sheet and the last row written.
fn table<'w>(
    book: &'w mut Workbook,
    f: &Formats,
    name: &str,
    headers: &[(&str, f64)],
    rows: Vec<Vec<Cell>>,
) -> Result<(&'w mut Worksheet, u32), ReportError> {
    let sheet = book.add_worksheet();
    sheet.set_name(name).map_err(err)?;
    for (c, (h, width)) in headers.iter().enumerate() {
        let c = c as u16;
        sheet.write_string_with_format(0, c, *h, &f.header).map_err(err)?;
        sheet.set_column_width(c, *width).map_err(err)?;
    }
    let n = rows.len() as u32;
    for (r, row) in rows.into_iter().enumerate() {
        let r = r as u32 + 1;
        for (c, cell) in row.into_iter().enumerate() {
            let c = c as u16;
            match cell {
                Cell::Text(s) => sheet.write_string(r, c, s).map(|_| ()),
                Cell::Int(v) => sheet.write_number_with_format(r, c, v as f64, &f.int).map(|_| ()),
                Cell::Ms(v) => sheet.write_number_with_format(r, c, v, &f.ms).map(|_| ()),
                Cell::Time(s) => match ExcelDateTime::parse_from_str(s.trim_end_matches('Z')) {
                    Ok(t) => sheet.write_datetime_with_format(r, c, &t, &f.time).map(|_| ()),
                    Err(_) => sheet.write_string(r, c, s).map(|_| ()),
                },
                Cell::Empty => Ok(()),
            }
            .map_err(err)?;
        }
    }
    sheet.set_freeze_panes(1, 0).map_err(err)?;
    sheet
        .autofilter(0, 0, n.max(1), headers.len().saturating_sub(1) as u16)
        .map_err(err)?;
    Ok((sheet, n))
}

/// A chart of column `value_col` by column 0 of sheet `name`, rows 1..=n.
fn chart(kind: ChartType, name: &str, n: u32, value_col: u16, title: &str) -> Chart {
    let mut chart = Chart::new(kind);
    chart
        .add_series()
        .set_name(title)
        .set_categories((name, 1, 0, n.max(1), 0))
        .set_values((name, 1, value_col, n.max(1), value_col));
    chart.title().set_name(title);
    chart.legend().set_hidden();
    chart
}

fn counts(rows: &[Count]) -> Vec<Vec<Cell>> {
    rows.iter()
        .map(|c| vec![Cell::Text(c.value.clone()), Cell::Int(c.count)])
        .collect()
}

fn samples(rows: &[Sample], class: Option<&str>) -> Vec<Vec<Cell>> {
    rows.iter()
        .map(|e| {
            let mut row = Vec::new();
            if let Some(k) = class {
                row.push(Cell::from(k));
            }
            row.extend([
                Cell::Time(e.occurred_at.clone()),
                Cell::from(e.log.as_str()),
                Cell::Int(e.index),
                Cell::from(e.id.as_str()),
                Cell::from(e.action.as_str()),
                Cell::from(&e.actor),
                Cell::Text(e.targets.join(", ")),
                Cell::from(&e.outcome),
                Cell::from(&e.error_type),
                Cell::from(&e.error_message),
                Cell::from(&e.message),
            ]);
            row
        })
        .collect()
}

const SAMPLE_HEADERS: [(&str, f64); 11] = [
    ("occurred_at", 20.0),
    ("log", 10.0),
    ("index", 10.0),
    ("id", 28.0),
    ("action", 22.0),
    ("actor", 22.0),
    ("targets", 26.0),
    ("outcome", 10.0),
    ("error_type", 18.0),
    ("error_message", 36.0),
    ("message", 40.0),
];

fn verification_rows(v: &Verification) -> Vec<(String, Cell)> {
    let mut rows = vec![(
        "checkpoint signature".to_string(),
        Cell::from(if v.signature_valid { "valid" } else { "INVALID" }),
    )];
    match &v.last {
        Some(run) => {
            rows.push(("last verification".into(), Cell::Time(run.at.clone())));
            rows.push(("last verification result".into(), Cell::from(run.result.as_str())));
            if let Some(n) = run.checkpoint_size {
                rows.push(("last verification checkpoint size".into(), Cell::Int(n)));
            }
        }
        None => rows.push(("last verification".into(), Cell::from("none recorded"))),
    }
    rows.push((
        "consistent with verified checkpoint".into(),
        Cell::from(match v.consistent_with_verified {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "no verification to compare",
        }),
    ));
    rows
}

pub(crate) fn render(report: &Report) -> Result<Vec<u8>, ReportError> {
    let mut book = Workbook::new();
    let f = Formats {
        header: CellFormat::new().set_bold().set_background_color("#DCE6F2"),
        int: CellFormat::new().set_num_format("#,##0"),
        ms: CellFormat::new().set_num_format("#,##0.00"),
        time: CellFormat::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
    };

    // The first sheet: what the report is, the checkpoint, key figures.
    let mut facts: Vec<(String, Cell)> = vec![
        ("report".into(), Cell::from(report.report)),
        ("log".into(), Cell::from(report.log.as_str())),
        ("generated_at".into(), Cell::Time(report.generated_at.clone())),
        ("period.since".into(), Cell::from(&report.period.since)),
        ("period.until".into(), Cell::from(&report.period.until)),
        ("checkpoint.size".into(), Cell::Int(report.checkpoint.size)),
        (
            "checkpoint.root_hash".into(),
            Cell::from(report.checkpoint.root_hash.as_str()),
        ),
        (
            "checkpoint.signed_size".into(),
            Cell::Int(report.checkpoint.signed_size),
        ),
        (
            "checkpoint.signed_root_hash".into(),
            Cell::from(report.checkpoint.signed_root_hash.as_str()),
        ),
        ("empty".into(), Cell::from(if report.empty { "yes" } else { "no" })),
    ];
    match &report.body {
        Body::Summary(s) => {
            facts.push(("total".into(), Cell::Int(s.total)));
            facts.push(("failures".into(), Cell::Int(s.failures.count)));
            facts.push(("errors".into(), Cell::Int(s.errors.count)));
            facts.push(("distinct_actors".into(), Cell::Int(s.distinct_actors)));
            if s.alerts.available {
                facts.push(("alerts fired".into(), Cell::Int(s.alerts.fired)));
            }
            facts.extend(verification_rows(&s.verification));
        }
        Body::Compliance(c) => {
            facts.push(("total".into(), Cell::Int(c.total)));
            facts.push(("empty hours".into(), Cell::Int(c.gaps.empty_hours)));
            facts.extend(verification_rows(&c.protection));
        }
        Body::Reconciliation(x) => {
            facts.push(("comparison".into(), Cell::from(x.name.as_str())));
            facts.push(("runs".into(), Cell::Int(x.runs_total)));
            for (o, n) in &x.by_outcome {
                facts.push((format!("runs {o}"), Cell::Int(*n)));
            }
            facts.push(("added".into(), Cell::from(x.totals.added)));
            facts.push(("removed".into(), Cell::from(x.totals.removed)));
            facts.push(("changed".into(), Cell::from(x.totals.changed)));
            facts.push(("differences".into(), Cell::from(x.totals.differences)));
            if x.truncated {
                facts.push(("oldest runs".into(), Cell::from("not read: too many runs")));
            }
        }
        Body::AccessReview(a) => {
            facts.push(("users".into(), Cell::Int(a.users.len() as u64)));
            facts.push(("api keys".into(), Cell::Int(a.keys.len() as u64)));
            facts.push(("findings".into(), Cell::Int(a.findings.len() as u64)));
        }
    }
    {
        let rows = facts.into_iter().map(|(k, v)| vec![Cell::Text(k), v]).collect();
        let (sheet, _) = table(&mut book, &f, "Report", &[("figure", 36.0), ("value", 60.0)], rows)?;
        sheet.set_header(&report.title);
    }

    match &report.body {
        Body::Summary(s) => {
            let rows = s
                .volume
                .iter()
                .map(|p| vec![Cell::Time(p.start.clone()), Cell::Int(p.count)])
                .collect();
            let (sheet, n) = table(&mut book, &f, "Volume", &[("start", 20.0), ("events", 12.0)], rows)?;
            sheet
                .insert_chart(
                    1,
                    3,
                    &chart(ChartType::Column, "Volume", n, 1, &format!("Events per {}", s.bucket)),
                )
                .map_err(err)?;

            let all: Vec<Count> = {
                let mut v: Vec<Count> = s
                    .by_action
                    .iter()
                    .map(|(a, n)| Count {
                        value: a.clone(),
                        count: *n,
                    })
                    .collect();
                v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
                v
            };
            let (sheet, n) = table(
                &mut book,
                &f,
                "Actions",
                &[("action", 30.0), ("events", 12.0)],
                counts(&all),
            )?;
            sheet
                .insert_chart(
                    1,
                    3,
                    &chart(ChartType::Bar, "Actions", n.min(15), 1, "Events by action"),
                )
                .map_err(err)?;
            let (sheet, n) = table(
                &mut book,
                &f,
                "Actors",
                &[("actor", 30.0), ("events", 12.0)],
                counts(&s.top_actors),
            )?;
            sheet
                .insert_chart(1, 3, &chart(ChartType::Bar, "Actors", n, 1, "Top actors"))
                .map_err(err)?;
            table(
                &mut book,
                &f,
                "Targets",
                &[("target", 30.0), ("events", 12.0)],
                counts(&s.top_targets),
            )?;
            let outcomes: Vec<Count> = s
                .by_outcome
                .iter()
                .map(|(o, n)| Count {
                    value: o.clone(),
                    count: *n,
                })
                .collect();
            let (sheet, n) = table(
                &mut book,
                &f,
                "Outcomes",
                &[("outcome", 16.0), ("events", 12.0)],
                counts(&outcomes),
            )?;
            sheet
                .insert_chart(1, 3, &chart(ChartType::Pie, "Outcomes", n, 1, "Events by outcome"))
                .map_err(err)?;
            let mut rows = samples(&s.failures.examples, Some("failure"));
            rows.extend(samples(&s.errors.examples, Some("error")));
            let mut headers = vec![("kind", 10.0)];
            headers.extend(SAMPLE_HEADERS);
            table(&mut book, &f, "Failures", &headers, rows)?;
            let rows = s
                .performance
                .iter()
                .map(|p| {
                    vec![
                        Cell::Text(p.action.clone()),
                        Cell::Int(p.count),
                        Cell::Ms(p.min),
                        Cell::Ms(p.p50),
                        Cell::Ms(p.p95),
                        Cell::Ms(p.p99),
                        Cell::Ms(p.max),
                        Cell::Ms(p.mean),
                        Cell::from(if p.exact { "exact" } else { "within 1%" }),
                    ]
                })
                .collect();
            let (sheet, n) = table(
                &mut book,
                &f,
                "Performance",
                &[
                    ("action", 26.0),
                    ("count", 10.0),
                    ("min_ms", 10.0),
                    ("p50_ms", 10.0),
                    ("p95_ms", 10.0),
                    ("p99_ms", 10.0),
                    ("max_ms", 12.0),
                    ("mean_ms", 10.0),
                    ("percentiles", 12.0),
                ],
                rows,
            )?;
            sheet
                .insert_chart(
                    1,
                    10,
                    &chart(ChartType::Bar, "Performance", n.min(15), 4, "p95 duration (ms)"),
                )
                .map_err(err)?;
            let rows = s
                .alerts
                .recent
                .iter()
                .map(|a| {
                    vec![
                        Cell::Time(a.fired_at.clone()),
                        Cell::from(a.rule.as_str()),
                        Cell::from(a.level.as_str()),
                        Cell::from(a.status.as_str()),
                        Cell::from(a.summary.as_str()),
                    ]
                })
                .collect();
            table(
                &mut book,
                &f,
                "Alerts",
                &[
                    ("fired_at", 20.0),
                    ("rule", 20.0),
                    ("level", 10.0),
                    ("status", 10.0),
                    ("summary", 60.0),
                ],
                rows,
            )?;
        }
        Body::Compliance(c) => {
            let rows = c
                .classes
                .iter()
                .map(|k| {
                    vec![
                        Cell::Text(format!("{} {}", k.requirement, k.id)),
                        Cell::Int(k.count),
                        Cell::Int(k.failures),
                        Cell::from(k.title),
                        Cell::Text(
                            k.actions
                                .iter()
                                .map(|a| format!("{}: {}", a.log, a.actions.join(" ")))
                                .collect::<Vec<_>>()
                                .join("; "),
                        ),
                    ]
                })
                .collect();
            let (sheet, n) = table(
                &mut book,
                &f,
                "Classes",
                &[
                    ("class", 34.0),
                    ("events", 12.0),
                    ("failures", 12.0),
                    ("title", 50.0),
                    ("actions", 80.0),
                ],
                rows,
            )?;
            sheet
                .insert_chart(
                    1,
                    6,
                    &chart(ChartType::Bar, "Classes", n, 1, "Events per PCI DSS 10.2.1 class"),
                )
                .map_err(err)?;
            let mut rows = Vec::new();
            for k in &c.classes {
                rows.extend(samples(&k.samples, Some(k.id)));
            }
            let mut headers = vec![("class", 24.0)];
            headers.extend(SAMPLE_HEADERS);
            table(&mut book, &f, "Samples", &headers, rows)?;
            let rows = c
                .gaps
                .flatlines
                .iter()
                .map(|g| {
                    vec![
                        Cell::Time(g.start.clone()),
                        Cell::Time(g.end.clone()),
                        Cell::Int(g.hours),
                    ]
                })
                .collect();
            table(
                &mut book,
                &f,
                "Gaps",
                &[("from", 20.0), ("to", 20.0), ("hours", 10.0)],
                rows,
            )?;
            table(
                &mut book,
                &f,
                "Missing sources",
                &[("service", 30.0), ("events before", 14.0)],
                counts(&c.gaps.missing_sources),
            )?;
        }
        Body::AccessReview(a) => {
            let rows = a
                .users
                .iter()
                .map(|u| {
                    vec![
                        Cell::from(u.name.as_str()),
                        Cell::from(u.id.as_str()),
                        Cell::from(u.role.as_str()),
                        Cell::from(&u.tenant),
                        Cell::from(if u.disabled { "disabled" } else { "active" }),
                        Cell::from(u.created_at.as_str()),
                        Cell::from(&u.last_sign_in),
                        Cell::from(&u.last_activity),
                        Cell::Int(u.admin_actions),
                        Cell::Int(u.trail_reads),
                        Cell::Int(u.active_keys),
                        Cell::Text(u.unused_rights.join("; ")),
                    ]
                })
                .collect();
            table(
                &mut book,
                &f,
                "Users",
                &[
                    ("name", 20.0),
                    ("id", 28.0),
                    ("role", 10.0),
                    ("tenant", 12.0),
                    ("state", 10.0),
                    ("created_at", 22.0),
                    ("last_sign_in", 22.0),
                    ("last_activity", 22.0),
                    ("admin_actions", 14.0),
                    ("trail_reads", 12.0),
                    ("active_keys", 12.0),
                    ("unused_rights", 60.0),
                ],
                rows,
            )?;
            let rows = a
                .keys
                .iter()
                .map(|k| {
                    vec![
                        Cell::from(k.id.as_str()),
                        Cell::from(k.name.as_str()),
                        Cell::from(k.scope.as_str()),
                        Cell::from(&k.tenant),
                        Cell::from(&k.owner),
                        Cell::from(k.created_at.as_str()),
                        Cell::from(&k.revoked_at),
                        Cell::from(&k.last_used),
                        Cell::Text(k.unused_rights.join("; ")),
                    ]
                })
                .collect();
            table(
                &mut book,
                &f,
                "API keys",
                &[
                    ("id", 16.0),
                    ("name", 20.0),
                    ("scope", 10.0),
                    ("tenant", 12.0),
                    ("owner", 16.0),
                    ("created_at", 22.0),
                    ("revoked_at", 22.0),
                    ("last_used", 22.0),
                    ("unused_rights", 60.0),
                ],
                rows,
            )?;
            let rows = a
                .findings
                .iter()
                .map(|x| {
                    vec![
                        Cell::from(x.subject),
                        Cell::from(x.id.as_str()),
                        Cell::from(x.name.as_str()),
                        Cell::from(x.finding.as_str()),
                    ]
                })
                .collect();
            table(
                &mut book,
                &f,
                "Findings",
                &[("subject", 10.0), ("id", 28.0), ("name", 20.0), ("finding", 70.0)],
                rows,
            )?;
        }
        Body::Reconciliation(x) => {
            let rows = x
                .trend
                .iter()
                .map(|p| {
                    vec![
                        Cell::Time(p.started_at.clone()),
                        Cell::from(p.differences),
                        Cell::from(p.added),
                        Cell::from(p.removed),
                        Cell::from(p.changed),
                        Cell::from(p.keys_found),
                        Cell::Int(u64::try_from(p.id).unwrap_or(0)),
                        Cell::from(p.kind.as_str()),
                    ]
                })
                .collect();
            let (sheet, n) = table(
                &mut book,
                &f,
                "Trend",
                &[
                    ("started_at", 20.0),
                    ("differences", 12.0),
                    ("added", 12.0),
                    ("removed", 12.0),
                    ("changed", 12.0),
                    ("keys_found", 12.0),
                    ("run", 8.0),
                    ("kind", 10.0),
                ],
                rows,
            )?;
            let mut line = Chart::new(ChartType::Line);
            for (col, title) in [(1u16, "differences"), (2, "added"), (3, "removed"), (4, "changed")] {
                line.add_series()
                    .set_name(title)
                    .set_categories(("Trend", 1, 0, n.max(1), 0))
                    .set_values(("Trend", 1, col, n.max(1), col));
            }
            line.title().set_name(&format!("Differences per run of {}", x.name));
            sheet.insert_chart(1, 9, &line).map_err(err)?;

            let rows = x
                .runs
                .iter()
                .map(|r| {
                    vec![
                        Cell::Int(u64::try_from(r.id).unwrap_or(0)),
                        Cell::Time(r.started_at.clone()),
                        Cell::Time(r.finished_at.clone()),
                        Cell::Int(r.duration_ms),
                        Cell::from(r.kind.as_str()),
                        Cell::from(if r.open { "running" } else { r.outcome.as_str() }),
                        Cell::from(r.left_rows),
                        Cell::from(r.right_rows),
                        Cell::from(r.rows),
                        Cell::from(r.added),
                        Cell::from(r.removed),
                        Cell::from(r.changed),
                        Cell::from(r.unchanged),
                        Cell::from(r.keys_found),
                        Cell::from(r.violations),
                        Cell::from(r.differences),
                        r.quality_score.map_or(Cell::Empty, Cell::Ms),
                        Cell::from(&r.error),
                    ]
                })
                .collect();
            table(
                &mut book,
                &f,
                "Runs",
                &[
                    ("run", 8.0),
                    ("started_at", 20.0),
                    ("finished_at", 20.0),
                    ("duration_ms", 12.0),
                    ("kind", 10.0),
                    ("outcome", 12.0),
                    ("left_rows", 12.0),
                    ("right_rows", 12.0),
                    ("rows", 12.0),
                    ("added", 10.0),
                    ("removed", 10.0),
                    ("changed", 10.0),
                    ("unchanged", 12.0),
                    ("keys_found", 10.0),
                    ("violations", 10.0),
                    ("differences", 12.0),
                    ("quality_score", 12.0),
                    ("error", 60.0),
                ],
                rows,
            )?;
            let rows = x
                .failures
                .iter()
                .map(|r| {
                    vec![
                        Cell::Int(u64::try_from(r.id).unwrap_or(0)),
                        Cell::Time(r.started_at.clone()),
                        Cell::from(r.kind.as_str()),
                        Cell::from(r.error.as_str()),
                    ]
                })
                .collect();
            table(
                &mut book,
                &f,
                "Failures",
                &[("run", 8.0), ("started_at", 20.0), ("kind", 10.0), ("error", 80.0)],
                rows,
            )?;
        }
    }
    book.save_to_buffer().map_err(err)
}
