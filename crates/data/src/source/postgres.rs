//! A PostgreSQL table or query, read through a server-side cursor in a
//! read-only transaction, a batch of rows at a time, so memory holds one
//! batch whatever the table's size. Values are PostgreSQL's own text
//! output (what `psql` shows), NULL as null.
//!
//! The synchronous `postgres` client is used (the workspace already
//! depends on it): it runs tokio-postgres on a small runtime of its own,
//! which fits the blocking [`Source`] trait without asking the caller for
//! a runtime.

use std::collections::VecDeque;
use std::str::FromStr;
use std::time::Duration;

use postgres::{Client, NoTls, SimpleQueryMessage, SimpleQueryRow};

use crate::{DataError, Row, Source};

/// Rows fetched per round trip.
const BATCH_ROWS: usize = 1000;
const CURSOR: &str = "sealtrail_rows";

/// A table (`?table=schema.name`) or query (`?query=SELECT…`) of a
/// PostgreSQL database. `line` is the row's number in the result, from 1.
pub struct PostgresSource {
    name: String,
    columns: Vec<String>,
    client: Client,
    batch: VecDeque<SimpleQueryRow>,
    exhausted: bool,
    row_number: u64,
}

/// The parts of an address: connection string for the client, what to
/// read, and the name errors show.
#[derive(Debug, PartialEq, Eq)]
struct Address {
    connect: String,
    select: String,
    name: String,
}

fn parse_address(address: &str) -> Result<Address, DataError> {
    let (base, query) = address.split_once('?').unwrap_or((address, ""));
    let name_base = without_password(base);
    let mut table = None;
    let mut sql = None;
    let mut rest = form_urlencoded::Serializer::new(String::new());
    let mut shown = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "table" => table = Some(value.to_string()),
            "query" => sql = Some(value.to_string()),
            "password" => {
                rest.append_pair(&key, &value);
                continue;
            }
            _ => {
                rest.append_pair(&key, &value);
            }
        }
        if key != "table" && key != "query" {
            shown.push(format!("{key}={value}"));
        }
    }
    let early = |message: &str| DataError::new(format!("{name_base}?…"), message);
    let (select, what) = match (table, sql) {
        (Some(t), None) => {
            let quoted = quote_table(&t).map_err(|m| early(&m))?;
            (format!("SELECT * FROM {quoted}"), format!("table={t}"))
        }
        (None, Some(q)) => {
            let q = q.trim().trim_end_matches(';').trim_end().to_string();
            if q.is_empty() {
                return Err(early("the query is empty"));
            }
            (q, "query".to_string())
        }
        (Some(_), Some(_)) => return Err(early("give either ?table= or ?query=, not both")),
        (None, None) => {
            return Err(early(
                "no table or query: add ?table=schema.name or ?query=SELECT… (URL-encoded)",
            ))
        }
    };
    let rest = rest.finish();
    let connect = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{rest}")
    };
    shown.insert(0, what);
    let name = format!("{name_base}?{}", shown.join("&"));
    Ok(Address { connect, select, name })
}

/// The address without a password in its user information. The user
/// information ends at the last `@`, so that a password with an unescaped
/// `/` or `@` in it is still cut out whole.
fn without_password(base: &str) -> String {
    let Some((scheme, after)) = base.split_once("://") else {
        return base.to_string();
    };
    match after.rsplit_once('@') {
        Some((user_info, rest)) => {
            let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
            format!("{scheme}://{user}@{rest}")
        }
        None => base.to_string(),
    }
}

/// `schema.name` as a quoted identifier: each dotted part is taken exactly
/// (case kept), unless already in double quotes.
fn quote_table(table: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = table.chars().peekable();
    let mut quoted_part = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if current.is_empty() && !quoted_part => {
                // A part in double quotes: up to the closing quote.
                quoted_part = true;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            current.push('"');
                        }
                        Some('"') => break,
                        Some(c) => current.push(c),
                        None => return Err(format!("unclosed quote in table {table:?}")),
                    }
                }
            }
            '.' => {
                parts.push(std::mem::take(&mut current));
                quoted_part = false;
            }
            _ if quoted_part => {
                return Err(format!("text after a quoted name in table {table:?}"));
            }
            c => current.push(c),
        }
    }
    parts.push(current);
    if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!("not a table name: {table:?} (expected schema.name)"));
    }
    Ok(parts
        .iter()
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join("."))
}

fn pg_error(name: &str, err: &postgres::Error) -> DataError {
    match err.as_db_error() {
        Some(db) => {
            let mut message = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                message.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                message.push_str(&format!("; hint: {hint}"));
            }
            DataError::new(name, message)
        }
        None => DataError::new(name, err.to_string()),
    }
}

impl PostgresSource {
    /// Connects and opens the cursor; the column names come with the
    /// first batch.
    pub fn open(address: &str) -> Result<PostgresSource, DataError> {
        let Address { connect, select, name } = parse_address(address)?;
        let mut config =
            postgres::Config::from_str(&connect).map_err(|e| DataError::new(&name, format!("bad address: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let mut client = config.connect(NoTls).map_err(|e| pg_error(&name, &e))?;
        client
            .batch_execute("BEGIN TRANSACTION READ ONLY")
            .map_err(|e| pg_error(&name, &e))?;
        // The extended protocol takes exactly one statement: a query
        // cannot end the transaction and run another.
        client
            .execute(&format!("DECLARE {CURSOR} NO SCROLL CURSOR FOR {select}"), &[])
            .map_err(|e| pg_error(&name, &e))?;
        let mut source = PostgresSource {
            name,
            columns: Vec::new(),
            client,
            batch: VecDeque::new(),
            exhausted: false,
            row_number: 0,
        };
        source.columns = source.fetch()?;
        Ok(source)
    }

    /// Fetches the next batch; returns the column names it describes.
    fn fetch(&mut self) -> Result<Vec<String>, DataError> {
        let messages = self
            .client
            .simple_query(&format!("FETCH FORWARD {BATCH_ROWS} FROM {CURSOR}"))
            .map_err(|e| pg_error(&self.name, &e))?;
        let mut columns = Vec::new();
        let mut fetched = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(desc) => {
                    columns = desc.iter().map(|c| c.name().to_string()).collect();
                }
                SimpleQueryMessage::Row(row) => {
                    fetched += 1;
                    self.batch.push_back(row);
                }
                _ => {}
            }
        }
        if fetched < BATCH_ROWS {
            self.exhausted = true;
        }
        Ok(columns)
    }
}

impl Source for PostgresSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Row) -> Result<bool, DataError> {
        row.clear();
        if self.batch.is_empty() {
            if self.exhausted {
                return Ok(false);
            }
            // The failing row is somewhere in the batch: say where it began.
            self.fetch().map_err(|mut e| {
                e.message = format!("{} (after row {})", e.message, self.row_number);
                e
            })?;
        }
        let Some(values) = self.batch.pop_front() else {
            return Ok(false);
        };
        self.row_number += 1;
        if values.len() != self.columns.len() {
            return Err(DataError::new(
                &self.name,
                format!("{} values, expected {}", values.len(), self.columns.len()),
            )
            .at_line(self.row_number));
        }
        for i in 0..values.len() {
            match values.get(i) {
                Some(v) => row.push(v),
                None => row.push_null(),
            }
        }
        row.line = self.row_number;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_lose_their_password_and_keep_their_target() {
        let a = parse_address("postgresql://ann:s3cret@db.example:5433/sales?table=public.Orders&sslmode=disable")
            .expect("address");
        assert_eq!(a.select, "SELECT * FROM \"public\".\"Orders\"");
        assert_eq!(
            a.name,
            "postgresql://ann@db.example:5433/sales?table=public.Orders&sslmode=disable"
        );
        assert_eq!(
            a.connect,
            "postgresql://ann:s3cret@db.example:5433/sales?sslmode=disable"
        );
        let a = parse_address("postgres://u@h/d?query=SELECT%201%20AS%20x%3B&password=pw").expect("address");
        assert_eq!(a.select, "SELECT 1 AS x");
        assert_eq!(a.name, "postgres://u@h/d?query");
        assert!(!a.name.contains("pw"));
        assert_eq!(a.connect, "postgres://u@h/d?password=pw");
        let a = parse_address("postgresql://u:p/a@ss@h:1/d?table=t").expect("address");
        assert_eq!(a.name, "postgresql://u@h:1/d?table=t");
    }

    #[test]
    fn table_names_are_quoted_exactly() {
        assert_eq!(quote_table("t").as_deref(), Ok("\"t\""));
        assert_eq!(quote_table("s.T").as_deref(), Ok("\"s\".\"T\""));
        assert_eq!(
            quote_table("x\"; DROP TABLE y; --").as_deref(),
            Ok("\"x\"\"; DROP TABLE y; --\"")
        );
        assert_eq!(quote_table("\"a.b\".c").as_deref(), Ok("\"a.b\".\"c\""));
        assert_eq!(quote_table("\"a\"\"b\"").as_deref(), Ok("\"a\"\"b\""));
        assert!(quote_table("a..b").is_err());
        assert!(quote_table("\"a").is_err());
        assert!(quote_table("a.b.c.d").is_err());
    }

    #[test]
    fn an_address_needs_exactly_one_target() {
        let err = parse_address("postgresql://u:pw@h/d").expect_err("no target");
        assert!(!err.input.contains("pw") && err.message.contains("?table="), "{err}");
        assert!(parse_address("postgresql://u@h/d?table=a&query=SELECT%201").is_err());
        assert!(parse_address("postgresql://u@h/d?query=%20%3B").is_err());
    }
}
