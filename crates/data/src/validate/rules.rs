//! Reading rules from TOML, refusing anything doubtful with the rules
//! file, the line and the field path (`columns.amount.range.min`).

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use jiff::civil::Date;
use jiff::{Timestamp, ToSpan};
use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use super::value::{self, ColumnType, Typed};
use crate::DataError;

/// Dates are read with this strftime format unless a column says otherwise.
pub const DEFAULT_DATE_FORMAT: &str = "%Y-%m-%d";
/// Memory for `unique` rules, all columns together, unless the rules set
/// `unique_memory_mib`.
pub const DEFAULT_UNIQUE_MEMORY_MIB: u64 = 256;
/// What one distinct value of a `unique` column is charged against the
/// budget: a 128-bit digest of the value and the line it was first seen
/// on, with the hash table's own overhead and growth, rounded up.
pub const UNIQUE_BYTES_PER_VALUE: u64 = 64;

/// The most allowed values listed in a rule's text.
const ALLOWED_IN_TEXT: usize = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    reference_date: Option<Spanned<toml::Value>>,
    unique_memory_mib: Option<Spanned<u64>>,
    #[serde(default)]
    columns: BTreeMap<String, Spanned<RawColumn>>,
    #[serde(default)]
    compare: Vec<Spanned<RawCompare>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    #[serde(default)]
    required: bool,
    #[serde(rename = "type")]
    kind: Option<ColumnType>,
    format: Option<Spanned<String>>,
    range: Option<Spanned<RawRange>>,
    pattern: Option<Spanned<String>>,
    allowed: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    unique: bool,
    max_years_past: Option<Spanned<u16>>,
    max_years_future: Option<Spanned<u16>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    min: Option<Spanned<toml::Value>>,
    max: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompare {
    rule: Option<Spanned<String>>,
    left: Option<String>,
    op: Option<Spanned<String>>,
    right: Option<String>,
}

/// A bound of a range rule, of its column's type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bound {
    /// Decimal text, read again at each comparison (it is short).
    Number(String),
    Date(Date),
    Timestamp(Timestamp),
}

impl Bound {
    pub(crate) fn typed(&self) -> Typed<'_> {
        match self {
            // Checked to be a decimal when the rules were read.
            Bound::Number(n) => value::parse_decimal(n).map_or(Typed::Text(n), Typed::Number),
            Bound::Date(d) => Typed::Date(*d),
            Bound::Timestamp(t) => Typed::Timestamp(*t),
        }
    }

    fn text(&self, format: &str) -> String {
        match self {
            Bound::Number(n) => n.clone(),
            Bound::Date(d) => jiff::fmt::strtime::format(format, *d).unwrap_or_else(|_| d.to_string()),
            Bound::Timestamp(t) => t.to_string(),
        }
    }
}

/// The order a comparison rule demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn parse(text: &str) -> Option<Op> {
        Some(match text {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "==" | "=" => Op::Eq,
            "!=" | "<>" => Op::Ne,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    pub(crate) fn holds(self, order: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Lt => order == Less,
            Op::Le => order != Greater,
            Op::Gt => order == Greater,
            Op::Ge => order != Less,
            Op::Eq => order == Equal,
            Op::Ne => order != Equal,
        }
    }
}

/// The rules for one column. Each `*_rule` is an index into
/// [`Rules::infos`], where violations are counted.
#[derive(Debug, Clone)]
pub(crate) struct ColumnRules {
    pub name: String,
    /// Line of the column's table in the rules file.
    pub line: u64,
    pub kind: Option<ColumnType>,
    pub format: String,
    pub required: Option<usize>,
    pub type_rule: Option<usize>,
    pub range: Option<(usize, Option<Bound>, Option<Bound>)>,
    pub pattern: Option<(usize, Regex)>,
    pub allowed: Option<(usize, HashSet<String>)>,
    pub unique: Option<usize>,
    /// Years before and after the reference date.
    pub sanity: Option<(usize, Option<u16>, Option<u16>)>,
}

/// `left op right` between two columns of one row.
#[derive(Debug, Clone)]
pub(crate) struct Comparison {
    pub rule: usize,
    pub left: usize,
    pub op: Op,
    pub right: usize,
}

/// One rule as violations name it.
#[derive(Debug, Clone)]
pub(crate) struct RuleInfo {
    pub column: String,
    pub rule: &'static str,
    pub text: String,
}

/// Validation rules read from a TOML file (docs/data.md, "Validation
/// rules"). Read once, checked against any number of inputs.
#[derive(Debug, Clone)]
pub struct Rules {
    pub(crate) file: String,
    pub(crate) reference_date: Date,
    pub(crate) unique_memory: u64,
    pub(crate) columns: Vec<ColumnRules>,
    pub(crate) comparisons: Vec<Comparison>,
    pub(crate) infos: Vec<RuleInfo>,
}

/// Line (1-based) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> u64 {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() as u64 + 1
}

struct Reader<'t> {
    file: &'t str,
    text: &'t str,
}

impl Reader<'_> {
    fn fail(&self, span: Range<usize>, path: &str, message: impl std::fmt::Display) -> DataError {
        DataError::new(self.file, format!("{path}: {message}")).at_line(line_of(self.text, span.start))
    }
}

impl Rules {
    /// Reads rules from the TOML `text` of the file `file_name` (which
    /// errors name). Dates are sanity-checked against today (UTC) unless
    /// the rules set `reference_date`; [`Rules::set_reference_date`]
    /// overrides both.
    pub fn from_toml(text: &str, file_name: &str) -> Result<Rules, DataError> {
        let de = toml::Deserializer::parse(text).map_err(|e| toml_error(file_name, text, "", &e))?;
        let raw: RawRules = serde_path_to_error::deserialize(de)
            .map_err(|e| toml_error(file_name, text, &field_path(&e.path().to_string()), e.inner()))?;
        let r = Reader { file: file_name, text };
        let reference_date = match &raw.reference_date {
            None => value::utc_date(Timestamp::now()),
            Some(v) => {
                let text = match v.get_ref() {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Datetime(d) => d.to_string(),
                    other => other.to_string(),
                };
                value::parse_date(DEFAULT_DATE_FORMAT, &text)
                    .ok_or_else(|| r.fail(v.span(), "reference_date", format!("{text} is not a date (YYYY-MM-DD)")))?
            }
        };
        let unique_memory = match &raw.unique_memory_mib {
            None => DEFAULT_UNIQUE_MEMORY_MIB << 20,
            Some(m) if *m.get_ref() == 0 || *m.get_ref() > 1 << 20 => {
                return Err(r.fail(m.span(), "unique_memory_mib", "must be between 1 and 1048576"))
            }
            Some(m) => m.get_ref() << 20,
        };
        let mut rules = Rules {
            file: file_name.to_string(),
            reference_date,
            unique_memory,
            columns: Vec::new(),
            comparisons: Vec::new(),
            infos: Vec::new(),
        };
        // In file order, which is the order violations of one row come in.
        let mut columns: Vec<(String, Spanned<RawColumn>)> = raw.columns.into_iter().collect();
        columns.sort_by_key(|(_, c)| c.span().start);
        for (name, column) in columns {
            let compiled = rules.column(&r, &name, column)?;
            rules.columns.push(compiled);
        }
        for (i, compare) in raw.compare.into_iter().enumerate() {
            let compiled = rules.comparison(&r, i, compare)?;
            rules.comparisons.push(compiled);
        }
        Ok(rules)
    }

    /// The rules file's name, as errors name it.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The date that `max_years_past` and `max_years_future` count from.
    pub fn reference_date(&self) -> Date {
        self.reference_date
    }

    pub fn set_reference_date(&mut self, date: Date) {
        self.reference_date = date;
    }

    /// The memory budget of the `unique` rules, in bytes.
    pub fn unique_memory(&self) -> u64 {
        self.unique_memory
    }

    /// The columns the rules name, in the rules file's order.
    pub fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }

    fn info(&mut self, column: &str, rule: &'static str, text: String) -> usize {
        self.infos.push(RuleInfo {
            column: column.to_string(),
            rule,
            text,
        });
        self.infos.len() - 1
    }

    fn column(&mut self, r: &Reader<'_>, name: &str, raw: Spanned<RawColumn>) -> Result<ColumnRules, DataError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let path = |field: &str| format!("columns.{name}.{field}");
        if let Some(f) = &raw.format {
            if raw.kind != Some(ColumnType::Date) {
                return Err(r.fail(f.span(), &path("format"), "a format is for columns of type \"date\""));
            }
        }
        let format = match raw.format {
            Some(f) => {
                check_date_format(f.get_ref()).map_err(|e| r.fail(f.span(), &path("format"), e))?;
                f.into_inner()
            }
            None => DEFAULT_DATE_FORMAT.to_string(),
        };
        let mut out = ColumnRules {
            name: name.to_string(),
            line: line_of(r.text, span.start),
            kind: raw.kind,
            format: format.clone(),
            required: None,
            type_rule: None,
            range: None,
            pattern: None,
            allowed: None,
            unique: None,
            sanity: None,
        };
        if raw.required {
            out.required = Some(self.info(name, "required", "a value is required".into()));
        }
        if let Some(kind) = raw.kind {
            let text = match kind {
                ColumnType::Text => None,
                ColumnType::Date => Some(format!("a date in the format {format}")),
                ColumnType::Timestamp => Some("an RFC 3339 timestamp".into()),
                ColumnType::Integer => Some("an integer".into()),
                ColumnType::Decimal => Some("a decimal number".into()),
                ColumnType::Boolean => Some("a boolean".into()),
            };
            out.type_rule = text.map(|t| self.info(name, "type", t));
        }
        if let Some(range) = raw.range {
            let kind = match raw.kind {
                Some(k @ (ColumnType::Integer | ColumnType::Decimal | ColumnType::Date | ColumnType::Timestamp)) => k,
                _ => {
                    return Err(r.fail(
                        range.span(),
                        &path("range"),
                        "a range needs the column's type: integer, decimal, date or timestamp",
                    ))
                }
            };
            let range_span = range.span();
            let range = range.into_inner();
            let min = range
                .min
                .map(|b| bound(r, &path("range.min"), kind, &format, b))
                .transpose()?;
            let max = range
                .max
                .map(|b| bound(r, &path("range.max"), kind, &format, b))
                .transpose()?;
            if let (Some(lo), Some(hi)) = (&min, &max) {
                if lo.typed().compare(&hi.typed()) == Some(std::cmp::Ordering::Greater) {
                    return Err(r.fail(range_span, &path("range"), "min is greater than max"));
                }
            }
            let text = match (&min, &max) {
                (Some(lo), Some(hi)) => format!("between {} and {}", lo.text(&format), hi.text(&format)),
                (Some(lo), None) => format!("at least {}", lo.text(&format)),
                (None, Some(hi)) => format!("at most {}", hi.text(&format)),
                (None, None) => return Err(r.fail(range_span, &path("range"), "give min, max or both")),
            };
            out.range = Some((self.info(name, "range", text), min, max));
        }
        if let Some(pattern) = raw.pattern {
            // Anchored: the whole value must match, as a validation means.
            let regex = Regex::new(&format!("^(?:{})$", pattern.get_ref())).map_err(|e| {
                // The parser's message spans lines; its last says what is wrong.
                let text = e.to_string();
                let last = text.lines().last().unwrap_or_default().trim_start_matches("error: ");
                r.fail(
                    pattern.span(),
                    &path("pattern"),
                    format!("not a regular expression: {last}"),
                )
            })?;
            let text = format!("matches {}", pattern.get_ref());
            out.pattern = Some((self.info(name, "pattern", text), regex));
        }
        if let Some(allowed) = raw.allowed {
            if allowed.get_ref().is_empty() {
                return Err(r.fail(allowed.span(), &path("allowed"), "list at least one value"));
            }
            let list = allowed.into_inner();
            let mut text = String::from("one of ");
            for (i, v) in list.iter().take(ALLOWED_IN_TEXT).enumerate() {
                if i > 0 {
                    text.push_str(", ");
                }
                text.push_str(&format!("{v:?}"));
            }
            if list.len() > ALLOWED_IN_TEXT {
                text.push_str(&format!(" and {} more", list.len() - ALLOWED_IN_TEXT));
            }
            out.allowed = Some((self.info(name, "allowed", text), list.into_iter().collect()));
        }
        if raw.unique {
            out.unique = Some(self.info(name, "unique", "values are unique".into()));
        }
        if raw.max_years_past.is_some() || raw.max_years_future.is_some() {
            let dated = matches!(raw.kind, Some(ColumnType::Date | ColumnType::Timestamp));
            for (field, years) in [
                ("max_years_past", &raw.max_years_past),
                ("max_years_future", &raw.max_years_future),
            ] {
                let Some(years) = years else { continue };
                if !dated {
                    return Err(r.fail(years.span(), &path(field), "needs the column's type: date or timestamp"));
                }
                // Within jiff's calendar whatever the reference date.
                if *years.get_ref() > 5000 {
                    return Err(r.fail(years.span(), &path(field), "at most 5000 years"));
                }
            }
            let past = raw.max_years_past.map(Spanned::into_inner);
            let future = raw.max_years_future.map(Spanned::into_inner);
            let text = match (past, future) {
                (Some(p), Some(f)) => format!("at most {p} years before and {f} years after the reference date"),
                (Some(p), None) => format!("at most {p} years before the reference date"),
                (None, Some(f)) => format!("at most {f} years after the reference date"),
                (None, None) => String::new(),
            };
            out.sanity = Some((self.info(name, "date_sanity", text), past, future));
        }
        Ok(out)
    }

    fn comparison(&mut self, r: &Reader<'_>, i: usize, raw: Spanned<RawCompare>) -> Result<Comparison, DataError> {
        let span = raw.span();
        let path = format!("compare[{i}]");
        let raw = raw.into_inner();
        let (left, op, right) = match (&raw.rule, &raw.left, &raw.op, &raw.right) {
            (Some(rule), None, None, None) => split_comparison(rule.get_ref()).ok_or_else(|| {
                r.fail(
                    rule.span(),
                    &format!("{path}.rule"),
                    format!(
                        "{:?} is not `column op column` with op one of < <= > >= == !=",
                        rule.get_ref()
                    ),
                )
            })?,
            (None, Some(left), Some(op), Some(right)) => {
                let parsed = Op::parse(op.get_ref().trim()).ok_or_else(|| {
                    r.fail(
                        op.span(),
                        &format!("{path}.op"),
                        format!("{:?} is not one of < <= > >= == !=", op.get_ref()),
                    )
                })?;
                (left.clone(), parsed, right.clone())
            }
            _ => {
                return Err(r.fail(
                    span,
                    &path,
                    "give either rule = \"left op right\" or left, op and right",
                ))
            }
        };
        let find = |name: &str| self.columns.iter().position(|c| c.name == name);
        let declared = |name: &str| -> Result<(usize, ColumnType), DataError> {
            find(name)
                .and_then(|c| Some((c, self.columns[c].kind?)))
                .ok_or_else(|| {
                    r.fail(
                        span.clone(),
                        &path,
                        format!("declare the type of {name:?} under [columns.{name}] to compare it"),
                    )
                })
        };
        let (l, lkind) = declared(&left)?;
        let (rc, rkind) = declared(&right)?;
        if !lkind.comparable(rkind) {
            return Err(r.fail(
                span,
                &path,
                format!(
                    "{left:?} is {} and {right:?} is {}: they do not compare",
                    lkind.as_str(),
                    rkind.as_str()
                ),
            ));
        }
        if lkind == ColumnType::Boolean && !matches!(op, Op::Eq | Op::Ne) {
            return Err(r.fail(span, &path, "booleans compare only with == or !="));
        }
        let text = format!("{left} {} {right}", op.as_str());
        let rule = self.info(&left, "compare", text);
        Ok(Comparison {
            rule,
            left: l,
            op,
            right: rc,
        })
    }
}

/// `a >= b` into its parts: the first operator found splits the text.
fn split_comparison(text: &str) -> Option<(String, Op, String)> {
    let at = text.find(['<', '>', '=', '!'])?;
    let rest = &text[at..];
    let len = if rest.len() >= 2 && Op::parse(&rest[..2]).is_some() {
        2
    } else {
        1
    };
    let op = Op::parse(&rest[..len])?;
    let left = text[..at].trim();
    let right = rest[len..].trim();
    if left.is_empty() || right.is_empty() || right.contains(['<', '>', '=', '!']) {
        return None;
    }
    Some((left.to_string(), op, right.to_string()))
}

/// A format is accepted if a date written with it reads back the same:
/// that rules out unknown directives and formats without a whole date.
fn check_date_format(format: &str) -> Result<(), String> {
    let sample = jiff::civil::date(2031, 11, 27);
    let text = jiff::fmt::strtime::format(format, sample).map_err(|e| format!("{format:?}: {e}"))?;
    match Date::strptime(format, &text) {
        Ok(d) if d == sample => Ok(()),
        _ => Err(format!("{format:?} does not write a whole date (year, month and day)")),
    }
}

fn bound(
    r: &Reader<'_>,
    path: &str,
    kind: ColumnType,
    format: &str,
    raw: Spanned<toml::Value>,
) -> Result<Bound, DataError> {
    let span = raw.span();
    let fail = |what: &str| r.fail(span.clone(), path, what);
    match kind {
        ColumnType::Integer | ColumnType::Decimal => {
            let text = match raw.get_ref() {
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) if f.is_finite() => f.to_string(),
                toml::Value::String(s) if value::parse_decimal(s).is_some() => s.clone(),
                _ => return Err(fail("expected a number")),
            };
            Ok(Bound::Number(text))
        }
        ColumnType::Date => {
            let text = match raw.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Datetime(d) => d.to_string(),
                _ => return Err(fail("expected a date")),
            };
            value::parse_date(format, &text)
                .or_else(|| value::parse_date(DEFAULT_DATE_FORMAT, &text))
                .map(Bound::Date)
                .ok_or_else(|| {
                    fail(&format!(
                        "{text:?} is not a date in the format {format} (or YYYY-MM-DD)"
                    ))
                })
        }
        ColumnType::Timestamp => {
            let text = match raw.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Datetime(d) => d.to_string(),
                _ => return Err(fail("expected an RFC 3339 timestamp")),
            };
            value::parse_timestamp(&text)
                .map(Bound::Timestamp)
                .ok_or_else(|| fail(&format!("{text:?} is not an RFC 3339 timestamp with offset")))
        }
        ColumnType::Text | ColumnType::Boolean => Err(fail("no range for this type")),
    }
}

/// The path as the rules file spells it, without the segments that
/// `Spanned` adds to record positions.
fn field_path(path: &str) -> String {
    path.split('.')
        .filter(|s| !s.starts_with("$__serde_spanned"))
        .collect::<Vec<_>>()
        .join(".")
}

fn toml_error(file: &str, text: &str, path: &str, e: &toml::de::Error) -> DataError {
    let message = e.message().trim_end();
    let message = if path.is_empty() || path == "." {
        message.to_string()
    } else {
        format!("{path}: {message}")
    };
    let err = DataError::new(file, message);
    match e.span() {
        Some(span) => err.at_line(line_of(text, span.start)),
        None => err,
    }
}

/// The first and last dates a date-sanity rule accepts, from `reference`.
pub(crate) fn sanity_window(reference: Date, past: Option<u16>, future: Option<u16>) -> (Option<Date>, Option<Date>) {
    let earliest = past.and_then(|y| reference.checked_sub(i64::from(y).years()).ok());
    let latest = future.and_then(|y| reference.checked_add(i64::from(y).years()).ok());
    (earliest, latest)
}
