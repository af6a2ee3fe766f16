//! How free text becomes terms, the same way for the events indexed and
//! for the text of a query (docs/query-syntax.md).
//!
//! Text is normalised (Unicode NFKC, then lowercase) and cut three ways:
//! - **words**: runs of letters, digits and combining marks;
//! - **word pairs**: each word with the next one of the same string, for
//!   phrases (`disk` `\0` `full`);
//! - **identifiers**: IPv4 and IPv6 addresses, e-mail addresses, UUIDs,
//!   paths and dotted names kept whole, so that `10.0.0.1` is one term.
//!
//! Not here: which fields of an event are text (`schema`), or how terms
//! become posting-list cursors (`query`).

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// The byte between the two words of a pair term; no word holds it.
pub(crate) const PAIR_SEPARATOR: u8 = 0;

/// Where a compound identifier is cut into smaller ones, coarsest first:
/// `10.0.0.1:443` holds `10.0.0.1`, `/home/bob@x.com/f` holds
/// `bob@x.com`, which holds `x.com`.
const SEPARATORS: [char; 3] = [':', '/', '@'];

/// A character of a word.
fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric()
    } else {
        c.is_alphanumeric() || is_combining_mark(c)
    }
}

/// A character that may be part of an identifier.
fn is_identifier_char(c: char) -> bool {
    is_word_char(c) || matches!(c, '.' | '_' | '-' | '@' | ':' | '/' | '+')
}

/// `text` in NFKC, lowercased. ASCII text, nearly all of an audit trail,
/// is its own NFKC form, and is only lowercased when it must be.
pub(crate) fn normalise<'a>(text: &'a str, scratch: &'a mut String) -> &'a str {
    if text.is_ascii() {
        if !text.bytes().any(|b| b.is_ascii_uppercase()) {
            return text;
        }
        scratch.clear();
        scratch.push_str(text);
        scratch.make_ascii_lowercase();
        return scratch;
    }
    scratch.clear();
    if is_nfkc_quick(text.chars()) == IsNormalized::Yes {
        scratch.extend(text.chars().flat_map(char::to_lowercase));
    } else {
        scratch.extend(text.nfkc().flat_map(char::to_lowercase));
    }
    scratch
}

/// The words of normalised text, in order.
pub(crate) fn words(norm: &str) -> impl Iterator<Item = &str> + Clone {
    norm.split(|c: char| !is_word_char(c)).filter(|w| !w.is_empty())
}

/// The runs of identifier characters of normalised text.
fn runs(norm: &str) -> impl Iterator<Item = &str> {
    norm.split(|c: char| !is_identifier_char(c)).filter(|r| !r.is_empty())
}

/// `s` without the punctuation around it; a leading `/` stays (a path).
fn trim(s: &str) -> &str {
    let s = s.trim_end_matches(|c: char| !is_word_char(c));
    let start = s.find(|c: char| is_word_char(c) || c == '/').unwrap_or(s.len());
    &s[start..]
}

/// The canonical text (RFC 5952) of `s` if it is an IPv6 address.
fn ipv6(s: &str) -> Option<String> {
    if !s.contains(':') {
        return None;
    }
    s.parse::<Ipv6Addr>().ok().map(|a| a.to_string())
}

/// Labels separated by single dots, each of word characters, `_` or `-`.
fn labels(s: &str, least: usize) -> bool {
    let mut n = 0;
    for label in s.split('.') {
        if label.is_empty() || !label.chars().all(|c| is_word_char(c) || c == '_' || c == '-') {
            return false;
        }
        n += 1;
    }
    n >= least
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local
            .chars()
            .all(|c| is_word_char(c) || matches!(c, '.' | '_' | '+' | '-'))
        && labels(domain, 1)
}

fn is_path(s: &str) -> bool {
    if s.contains(':') {
        return false;
    }
    let rest = s.strip_prefix('/');
    let segments = rest.unwrap_or(s);
    segments
        .split('/')
        .all(|p| !p.is_empty() && p.chars().any(is_word_char))
        && (rest.is_some() || segments.contains('/'))
}

/// Whether trimmed, normalised `s` (not an IPv6 address) is kept whole:
/// a UUID, an e-mail address, a path, or a dotted name (which an IPv4
/// address is).
fn is_identifier(s: &str) -> bool {
    is_uuid(s) || is_email(s) || is_path(s) || labels(s, 2)
}

/// The separator `s` is cut at, from `level` on, and the level below it.
fn cut(s: &str, level: usize) -> Option<(char, usize)> {
    (level..SEPARATORS.len())
        .find(|&l| s.contains(SEPARATORS[l]))
        .map(|l| (SEPARATORS[l], l + 1))
}

/// Every identifier in `piece` (trimmed) and in its parts, from `level`.
fn identifiers_of(piece: &str, level: usize, f: &mut impl FnMut(&str)) {
    if piece.is_empty() {
        return;
    }
    if is_identifier(piece) {
        f(piece);
    }
    if let Some((sep, below)) = cut(piece, level) {
        for part in piece.split(sep) {
            identifiers_of(trim(part), below, f);
        }
    }
}

/// Every identifier of one run of identifier characters, whole and in
/// parts. A run without punctuation is one word and holds none.
fn run_identifiers(run: &str, f: &mut impl FnMut(&str)) {
    if run.chars().all(is_word_char) {
        return;
    }
    let run = run.trim_end_matches('.');
    if let Some(address) = ipv6(run) {
        f(&address);
    }
    identifiers_of(trim(run), 0, f);
}

/// What an indexed string yields.
pub(crate) trait TermSink {
    fn word(&mut self, word: &str);
    fn pair(&mut self, first: &str, second: &str);
    fn identifier(&mut self, identifier: &str);
}

/// Cut one string of an event into its words, word pairs and identifiers.
pub(crate) fn index_text(text: &str, scratch: &mut String, sink: &mut impl TermSink) {
    let norm = normalise(text, scratch);
    let mut previous: Option<&str> = None;
    for run in runs(norm) {
        for w in words(run) {
            sink.word(w);
            if let Some(p) = previous {
                sink.pair(p, w);
            }
            previous = Some(w);
        }
        run_identifiers(run, &mut |id| sink.identifier(id));
    }
}

/// Append the pair term of two words.
pub(crate) fn push_pair(term: &mut Vec<u8>, first: &str, second: &str) {
    term.extend_from_slice(first.as_bytes());
    term.push(PAIR_SEPARATOR);
    term.extend_from_slice(second.as_bytes());
}

/// Whether `phrase` (normalised words) occurs in `text` as consecutive
/// words.
pub(crate) fn holds_phrase(text: &str, phrase: &[String], scratch: &mut String) -> bool {
    let norm = normalise(text, scratch);
    let mut words = words(norm);
    let Some(first) = phrase.first() else { return true };
    // Each start at an occurrence of the first word, compared word by word.
    loop {
        let mut rest = words.clone();
        match words.next() {
            None => return false,
            Some(w) if w == first => {
                rest.next();
                if phrase[1..].iter().all(|p| rest.next() == Some(p.as_str())) {
                    return true;
                }
            }
            Some(_) => {}
        }
    }
}

/// The text condition of a query: every term must occur (words and
/// identifiers, each as an index term) and every phrase (two or more
/// words) must occur as consecutive words of one string.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TextQuery {
    pub terms: BTreeSet<String>,
    pub phrases: Vec<Vec<String>>,
}

/// Whether `c` opens or closes a phrase: the ASCII double quote (to
/// which NFKC maps the full-width one) or a typographic double quote.
fn is_quote(c: char) -> bool {
    matches!(c, '"' | '\u{201c}' | '\u{201d}' | '\u{201e}')
}

impl TextQuery {
    /// Parse query text: quoted phrases, and outside them identifiers
    /// (looked up whole) and words. An unclosed quote runs to the end.
    pub fn parse(text: &str) -> TextQuery {
        let mut scratch = String::new();
        let norm = normalise(text, &mut scratch);
        let mut q = TextQuery::default();
        for (i, part) in norm.split(is_quote).enumerate() {
            if i % 2 == 1 {
                let phrase: Vec<String> = words(part).map(str::to_owned).collect();
                match phrase.len() {
                    0 => {}
                    1 => {
                        q.terms.extend(phrase);
                    }
                    _ => {
                        if !q.phrases.contains(&phrase) {
                            q.phrases.push(phrase);
                        }
                    }
                }
            } else {
                for run in runs(part) {
                    q.add_run(run);
                }
            }
        }
        q
    }

    fn add_run(&mut self, run: &str) {
        let run = run.trim_end_matches('.');
        if let Some(address) = ipv6(run) {
            self.terms.insert(address);
            return;
        }
        self.add_piece(trim(run), 0);
    }

    /// The whole piece if it is an identifier, else its parts at the
    /// coarsest separator it holds (as the index cuts them), else its
    /// words.
    fn add_piece(&mut self, piece: &str, level: usize) {
        if piece.is_empty() {
            return;
        }
        if is_identifier(piece) {
            self.terms.insert(piece.to_owned());
            return;
        }
        match cut(piece, level) {
            Some((sep, below)) => {
                for part in piece.split(sep) {
                    self.add_piece(trim(part), below);
                }
            }
            None => self.terms.extend(words(piece).map(str::to_owned)),
        }
    }

    /// Every term and phrase word, for callers that check a query has any.
    pub fn all_words(&self) -> Vec<String> {
        let mut out: Vec<String> = self.terms.iter().cloned().collect();
        out.extend(self.phrases.iter().flatten().cloned());
        out
    }
}

#[cfg(test)]
fn normalised(text: &str) -> String {
    normalise(text, &mut String::new()).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Terms(BTreeSet<String>);

    impl TermSink for Terms {
        fn word(&mut self, w: &str) {
            self.0.insert(w.to_owned());
        }
        fn pair(&mut self, a: &str, b: &str) {
            self.0.insert(format!("{a}+{b}"));
        }
        fn identifier(&mut self, id: &str) {
            self.0.insert(format!("={id}"));
        }
    }

    fn check(text: &str, expected: &[&str]) {
        let mut terms = Terms::default();
        index_text(text, &mut String::new(), &mut terms);
        let got: Vec<&str> = terms
            .0
            .iter()
            .map(String::as_str)
            .filter(|t| t.starts_with('='))
            .collect();
        assert_eq!(got, expected, "identifiers of {text:?}");
    }

    #[test]
    fn identifiers_whole_and_in_parts() {
        check("from 10.0.0.1:443 refused", &["=10.0.0.1"]);
        check(
            "mail alice+ops@Example.COM.",
            &["=alice+ops@example.com", "=example.com"],
        );
        check("[2001:DB8:0:0::1]:8080", &["=2001:db8::1"]);
        check("fe80::1%eth0", &["=fe80::1"]);
        check("::ffff:10.0.0.1", &["=10.0.0.1", "=::ffff:10.0.0.1"]);
        check("path=/var/log/x,", &["=/var/log/x"]);
        check("/etc/nginx/nginx.conf:12", &["=/etc/nginx/nginx.conf", "=nginx.conf"]);
        check("reload app.config.reload now", &["=app.config.reload"]);
        check(
            "6F9619FF-8B86-D011-B42D-00C04FC964FF",
            &["=6f9619ff-8b86-d011-b42d-00c04fc964ff"],
        );
        check("https://example.com/a", &["=example.com"]);
        check("10.0.0.0/8", &["=10.0.0.0", "=10.0.0.0/8"]);
        check("at 12:30:45 read-only", &[]);
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalised("ﬁle ＡＢＣ１２"), "file abc12");
        assert_eq!(normalised("A\u{308}"), normalised("Ä"));
        assert_eq!(normalised("already lower"), "already lower");
        let mut t = Terms::default();
        index_text("Ä\u{308}x", &mut String::new(), &mut t);
        assert!(t.0.iter().all(|w| w != "x"), "a combining mark continues its word");
    }

    #[test]
    fn query_parse() {
        let q = TextQuery::parse(r#"Disk "Disk  FULL" 10.0.0.1:443 ip=10.0.0.2 “a b c” "x"#);
        let terms: Vec<&str> = q.terms.iter().map(String::as_str).collect();
        assert_eq!(terms, ["10.0.0.1", "10.0.0.2", "443", "disk", "ip", "x"]);
        assert_eq!(q.phrases, [vec!["disk", "full"], vec!["a", "b", "c"]]);
        assert!(TextQuery::parse(" -- ").all_words().is_empty());
    }

    #[test]
    fn phrases_hold_in_order() {
        let p = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let s = &mut String::new();
        assert!(holds_phrase("The DISK, full again", &p("disk full again"), s));
        assert!(!holds_phrase("full disk again", &p("disk full again"), s));
        assert!(holds_phrase("a a b c", &p("a b c"), s));
    }
}
