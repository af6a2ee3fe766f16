//! `log_line_prefix` for the stderr format: the server's escapes compiled
//! into a matcher that splits a log line into its prefix fields, its level
//! and its message. It reads what the server wrote; it does not format.

use std::fmt;

/// The levels a server writes after the prefix that start a log entry.
const PRIMARY: &[&str] = &[
    "LOG", "ERROR", "WARNING", "FATAL", "PANIC", "NOTICE", "INFO", "DEBUG1", "DEBUG2", "DEBUG3", "DEBUG4", "DEBUG5",
    "DEBUG",
];
/// The levels that continue the entry just before them (same process).
pub(crate) const ATTACHED: &[&str] = &["DETAIL", "HINT", "QUERY", "CONTEXT", "LOCATION", "STATEMENT"];

/// Prefixes tried, in this order, when none is given: PostgreSQL's default,
/// Debian's, and the usual pgBadger-style settings.
const CANDIDATES: &[&str] = &[
    "%m [%p] ",
    "%t [%p] ",
    "%m [%p] %q%u@%d ",
    "%t [%p] %q%u@%d ",
    "%m [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
    "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
    "%t [%p]: [%l-1] ",
    "%m [%p]: [%l-1] ",
    "%t [%p]: user=%u,db=%d,app=%a,client=%h ",
    "%m [%p]: user=%u,db=%d,app=%a,client=%h ",
    "%t [%p-%l] %q%u@%d ",
    "%m [%p-%l] %q%u@%d ",
    "%m %u %d [%p] ",
    "%t %u %d [%p] ",
    "",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    Escape(char),
    /// `%q`: non-session processes stop the prefix here.
    SessionOnly,
}

/// A compiled `log_line_prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinePrefix {
    text: String,
    tokens: Vec<Token>,
}

/// What a prefix says about one line; values borrow from the line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PrefixFields<'a> {
    pub timestamp: Option<&'a str>,
    pub epoch: Option<&'a str>,
    pub pid: Option<&'a str>,
    pub user: Option<&'a str>,
    pub database: Option<&'a str>,
    pub application: Option<&'a str>,
    pub host: Option<&'a str>,
    pub remote: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub session_line: Option<&'a str>,
    pub sqlstate: Option<&'a str>,
    pub xid: Option<&'a str>,
    pub vxid: Option<&'a str>,
    pub command_tag: Option<&'a str>,
    pub backend_type: Option<&'a str>,
    pub query_id: Option<&'a str>,
    pub leader_pid: Option<&'a str>,
}

/// A line split by the prefix: its fields, level and message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrefixedLine<'a> {
    pub fields: PrefixFields<'a>,
    pub level: &'a str,
    pub message: &'a str,
}

/// A `log_line_prefix` that cannot be used: the escape at `at` (0-based
/// character) is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixError {
    pub prefix: String,
    pub at: usize,
    pub message: String,
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "log_line_prefix {:?}, character {}: {}",
            self.prefix,
            self.at + 1,
            self.message
        )
    }
}

impl std::error::Error for PrefixError {}

impl fmt::Display for LinePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl LinePrefix {
    /// Compile a `log_line_prefix` as set in postgresql.conf (without the
    /// quotes). Padding such as `%-10u` is accepted; the values are trimmed.
    pub fn parse(text: &str) -> Result<LinePrefix, PrefixError> {
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            // Optional padding: -?digits.
            while let Some(&(_, p)) = chars.peek() {
                if p == '-' || p.is_ascii_digit() {
                    chars.next();
                } else {
                    break;
                }
            }
            let Some((_, e)) = chars.next() else {
                return Err(PrefixError {
                    prefix: text.to_owned(),
                    at,
                    message: "a '%' ends the prefix".to_owned(),
                });
            };
            match e {
                '%' => literal.push('%'),
                'q' => {
                    if !literal.is_empty() {
                        tokens.push(Token::Literal(std::mem::take(&mut literal)));
                    }
                    tokens.push(Token::SessionOnly);
                }
                'a' | 'u' | 'd' | 'r' | 'h' | 'b' | 'p' | 'P' | 't' | 'm' | 'n' | 'i' | 'e' | 'c' | 'l' | 's' | 'v'
                | 'x' | 'Q' => {
                    if !literal.is_empty() {
                        tokens.push(Token::Literal(std::mem::take(&mut literal)));
                    }
                    tokens.push(Token::Escape(e));
                }
                other => {
                    return Err(PrefixError {
                        prefix: text.to_owned(),
                        at,
                        message: format!("unknown escape %{other}"),
                    })
                }
            }
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        Ok(LinePrefix {
            text: text.to_owned(),
            tokens,
        })
    }

    /// The prefix among the common settings that reads most of `lines`
    /// (the first lines of a log), or `None` when none reads half of them.
    pub fn detect<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<LinePrefix> {
        let candidates: Vec<LinePrefix> = CANDIDATES.iter().filter_map(|c| LinePrefix::parse(c).ok()).collect();
        let mut hits = vec![0usize; candidates.len()];
        let mut total = 0usize;
        for line in lines {
            if line.starts_with('\t') || line.is_empty() {
                continue;
            }
            total += 1;
            for (i, c) in candidates.iter().enumerate() {
                if c.split(line).is_some() {
                    hits[i] += 1;
                }
            }
        }
        // Most lines read; on a tie the more specific prefix (more tokens).
        let (best, count) = hits
            .iter()
            .enumerate()
            .max_by_key(|&(i, &h)| (h, candidates[i].tokens.len(), std::cmp::Reverse(i)))?;
        if *count == 0 || *count * 2 < total {
            return None;
        }
        candidates.into_iter().nth(best)
    }

    /// Split `line` into prefix fields, level and message, or `None` when
    /// the line does not start with this prefix followed by a level.
    pub(crate) fn split<'a>(&self, line: &'a str) -> Option<PrefixedLine<'a>> {
        let mut fields = PrefixFields::default();
        let mut rest = line;
        let mut i = 0;
        while i < self.tokens.len() {
            match &self.tokens[i] {
                Token::Literal(l) => rest = rest.strip_prefix(l.as_str())?,
                Token::SessionOnly => {
                    if let Some((level, message)) = split_level(rest) {
                        return Some(PrefixedLine { fields, level, message });
                    }
                }
                Token::Escape(e) => {
                    let next = match self.tokens.get(i + 1) {
                        Some(Token::Literal(l)) => Some(l.as_str()),
                        _ => None,
                    };
                    let (value, after) = take_value(*e, rest, next)?;
                    set_field(&mut fields, *e, value.trim());
                    rest = after;
                }
            }
            i += 1;
        }
        let (level, message) = split_level(rest)?;
        Some(PrefixedLine { fields, level, message })
    }
}

/// Whether `level` starts a new entry (else it continues the previous one).
pub(crate) fn is_primary(level: &str) -> bool {
    PRIMARY.contains(&level)
}

/// `LEVEL:  message` at the start of `rest`.
fn split_level(rest: &str) -> Option<(&str, &str)> {
    // Levels are at most 9 characters: look no further.
    let colon = rest.as_bytes().iter().take(10).position(|&b| b == b':')?;
    let level = &rest[..colon];
    if !(PRIMARY.contains(&level) || ATTACHED.contains(&level)) {
        return None;
    }
    let message = rest[colon + 1..].strip_prefix("  ").unwrap_or(&rest[colon + 1..]);
    Some((level, message))
}

fn take_value<'a>(escape: char, rest: &'a str, next: Option<&str>) -> Option<(&'a str, &'a str)> {
    match escape {
        // "2026-12-06 20:20:42.342 UTC": date, time, zone abbreviation.
        't' | 'm' | 's' => {
            let b = rest.as_bytes();
            let shape = b.len() >= 19
                && b[4] == b'-'
                && b[7] == b'-'
                && b[10] == b' '
                && b[13] == b':'
                && b[16] == b':'
                && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
                    .iter()
                    .all(|&k| b[k].is_ascii_digit());
            if !shape {
                return None;
            }
            let mut end = 19;
            // %m has milliseconds, %t and %s do not.
            if (b.get(end) == Some(&b'.')) != (escape == 'm') {
                return None;
            }
            if escape == 'm' {
                end += 1;
                while b.get(end).is_some_and(u8::is_ascii_digit) {
                    end += 1;
                }
            }
            if b.get(end) == Some(&b' ') {
                let zone = rest[end + 1..].find(' ').map_or(rest.len(), |z| end + 1 + z);
                end = zone;
            }
            Some((&rest[..end], &rest[end..]))
        }
        _ => match next {
            Some(literal) => {
                let end = rest.find(literal)?;
                Some((&rest[..end], &rest[end..]))
            }
            None => {
                let end = rest.find(' ').unwrap_or(rest.len());
                Some((&rest[..end], &rest[end..]))
            }
        },
    }
}

fn set_field<'a>(f: &mut PrefixFields<'a>, escape: char, value: &'a str) {
    let slot = match escape {
        't' | 'm' => &mut f.timestamp,
        'n' => &mut f.epoch,
        'p' => &mut f.pid,
        'u' => &mut f.user,
        'd' => &mut f.database,
        'a' => &mut f.application,
        'h' => &mut f.host,
        'r' => &mut f.remote,
        'c' => &mut f.session_id,
        'l' => &mut f.session_line,
        'e' => &mut f.sqlstate,
        'x' => &mut f.xid,
        'v' => &mut f.vxid,
        'i' => &mut f.command_tag,
        'b' => &mut f.backend_type,
        'Q' => &mut f.query_id,
        'P' => &mut f.leader_pid,
        _ => return,
    };
    if !value.is_empty() {
        *slot = Some(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_only_part_is_optional() {
        let p = LinePrefix::parse("%m [%p] %q%u@%d ").expect("valid prefix");
        let s = p
            .split("2026-12-06 20:21:51.433 UTC [20318] alice@shop ERROR:  boom")
            .expect("session line");
        assert_eq!(s.fields.timestamp, Some("2026-12-06 20:21:51.433 UTC"));
        assert_eq!(s.fields.pid, Some("20318"));
        assert_eq!(s.fields.user, Some("alice"));
        assert_eq!(s.fields.database, Some("shop"));
        assert_eq!((s.level, s.message), ("ERROR", "boom"));
        let s = p
            .split("2026-12-06 20:21:51.433 UTC [20304] LOG:  database system is shut down")
            .expect("postmaster line");
        assert_eq!(s.fields.user, None);
        assert_eq!(s.message, "database system is shut down");
        assert!(p.split("garbage LOG:  x").is_none());
        assert!(p.split("2026-12-06 20:21:51.433 UTC [1] nolevel here").is_none());
    }

    #[test]
    fn unknown_escape_is_refused_with_its_position() {
        let e = LinePrefix::parse("%m %z").expect_err("%z is not an escape");
        assert_eq!(e.at, 3);
    }

    #[test]
    fn detection_prefers_the_prefix_that_reads_most_lines() {
        let debian = [
            "2026-12-06 20:21:51.323 UTC [20304] LOG:  starting PostgreSQL 15.20",
            "2026-12-06 20:21:51.433 UTC [20318] postgres@postgres LOG:  statement: SELECT 42",
            "\tcontinued",
            "2026-12-06 20:21:51.433 UTC [20318] postgres@postgres ERROR:  boom",
        ];
        let p = LinePrefix::detect(debian).expect("detected");
        assert_eq!(p.to_string(), "%m [%p] %q%u@%d ");
        let bare = LinePrefix::detect(["LOG:  a", "ERROR:  b"]).expect("detected");
        assert_eq!(bare.to_string(), "");
        assert!(LinePrefix::detect(["<1> LOG:  a", "<2> LOG:  b"]).is_none());
    }

    #[test]
    fn padding_is_trimmed() {
        let p = LinePrefix::parse("%t %-8u| ").expect("valid prefix");
        let s = p.split("2026-12-06 20:21:51 UTC bob     | LOG:  hi").expect("line");
        assert_eq!(s.fields.user, Some("bob"));
    }
}
