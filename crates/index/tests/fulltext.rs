//! Free-text search against a naive scan: random and hand-written events
//! full of addresses, e-mail addresses, UUIDs, paths, dotted names,
//! phrases and characters with several Unicode spellings are indexed;
//! every query's answers (count, pages both ways, every match) must be
//! exactly the events a reference matcher written here finds by reading
//! each event's text (docs/query-syntax.md is its specification).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sealtrail_event::{accept_json, event_id, Event, Timestamp};
use sealtrail_index::{EventIndex, EventSource, Filter, IndexError, IndexOptions, Order, Page, SourceError};
use sealtrail_testgen::Rng;
use serde_json::{json, Value};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

// ---- the reference matcher ---------------------------------------------

fn norm(s: &str) -> String {
    s.nfkc().collect::<String>().to_lowercase()
}

fn word_char(c: char) -> bool {
    c.is_alphanumeric() || is_combining_mark(c)
}

fn ident_char(c: char) -> bool {
    word_char(c) || ".-_@:/+".contains(c)
}

/// Maximal runs of characters satisfying `keep`.
fn runs_of(s: &str, keep: fn(char) -> bool) -> Vec<String> {
    let mut out = vec![String::new()];
    for c in s.chars() {
        if keep(c) {
            out.last_mut().unwrap().push(c);
        } else if !out.last().unwrap().is_empty() {
            out.push(String::new());
        }
    }
    out.retain(|r| !r.is_empty());
    out
}

fn ref_words(s: &str) -> Vec<String> {
    runs_of(s, word_char)
}

/// Punctuation off both ends, except a leading slash.
fn strip(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut end = chars.len();
    while end > 0 && !word_char(chars[end - 1]) {
        end -= 1;
    }
    let mut start = 0;
    while start < end && !(word_char(chars[start]) || chars[start] == '/') {
        start += 1;
    }
    chars[start..end].iter().collect()
}

fn dotted(s: &str, min_labels: usize) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= min_labels
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| word_char(c) || c == '-' || c == '_'))
}

fn whole(s: &str) -> bool {
    let uuid = {
        let groups: Vec<&str> = s.split('-').collect();
        groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
            && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
    };
    let email = match s.split('@').collect::<Vec<_>>()[..] {
        [local, domain] => {
            !local.is_empty() && local.chars().all(|c| word_char(c) || ".-_+".contains(c)) && dotted(domain, 1)
        }
        _ => false,
    };
    let path = !s.contains(':') && {
        let (absolute, rest) = match s.strip_prefix('/') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let segments: Vec<&str> = rest.split('/').collect();
        (absolute || segments.len() > 1) && segments.iter().all(|p| p.chars().any(word_char))
    };
    uuid || email || path || dotted(s, 2)
}

fn v6(s: &str) -> Option<String> {
    s.contains(':')
        .then(|| s.parse::<Ipv6Addr>().ok().map(|a| a.to_string()))?
}

/// What a query asks for, or an event's text holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Atom {
    Word(String),
    Id(String),
}

/// The pieces of a run, coarsest separator first; `all` keeps descending
/// below whole identifiers (what the text holds), otherwise a whole
/// identifier stops the descent (what a query asks).
fn pieces(p: String, level: usize, all: bool, out: &mut Vec<Atom>) {
    if p.is_empty() {
        return;
    }
    let is_whole = whole(&p);
    if is_whole {
        out.push(Atom::Id(p.clone()));
        if !all {
            return;
        }
    }
    let seps = [':', '/', '@'];
    match (level..3).find(|&l| p.contains(seps[l])) {
        Some(l) => {
            for part in p.split(seps[l]) {
                pieces(strip(part), l + 1, all, out);
            }
        }
        None if !is_whole || all => out.extend(ref_words(&p).into_iter().map(Atom::Word)),
        None => {}
    }
}

fn atoms_of_run(run: &str, all: bool) -> Vec<Atom> {
    let run = run.trim_end_matches('.');
    let mut out = Vec::new();
    if let Some(a) = v6(run) {
        out.push(Atom::Id(a));
        if !all {
            return out;
        }
    }
    pieces(strip(run), 0, all, &mut out);
    out
}

struct Query {
    atoms: BTreeSet<Atom>,
    phrases: Vec<Vec<String>>,
}

fn parse(text: &str) -> Query {
    let text = norm(text);
    let mut q = Query {
        atoms: BTreeSet::new(),
        phrases: Vec::new(),
    };
    let quote = |c: char| c == '"' || c == '\u{201c}' || c == '\u{201d}' || c == '\u{201e}';
    for (i, part) in text.split(quote).enumerate() {
        if i % 2 == 1 {
            let words = ref_words(part);
            if words.len() == 1 {
                q.atoms.insert(Atom::Word(words[0].clone()));
            } else if words.len() > 1 {
                q.phrases.push(words);
            }
        } else {
            for run in runs_of(part, ident_char) {
                q.atoms.extend(atoms_of_run(&run, false));
            }
        }
    }
    q
}

/// The strings of an event that free text reads, each on its own.
fn strings(e: &Event) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            Value::Object(m) => m.iter().for_each(|(k, v)| {
                out.push(k.clone());
                walk(v, out);
            }),
            Value::Bool(_) | Value::Null => {}
        }
    }
    let mut out: Vec<String> = e.message.iter().cloned().collect();
    if let Some(err) = &e.error {
        out.extend(err.kind.iter().chain(&err.message).cloned());
    }
    if let Some(d) = &e.details {
        walk(&Value::Object(d.clone()), &mut out);
    }
    out.iter().map(|s| norm(s)).collect()
}

/// What the reference reads of one event: the words of each string, and
/// every word and identifier of them all.
struct Read {
    words: Vec<Vec<String>>,
    held: BTreeSet<Atom>,
}

fn read(e: &Event) -> Read {
    let strings = strings(e);
    let mut held = BTreeSet::new();
    for s in &strings {
        held.extend(ref_words(s).into_iter().map(Atom::Word));
        for run in runs_of(s, ident_char) {
            held.extend(atoms_of_run(&run, true));
        }
    }
    Read {
        words: strings.iter().map(|s| ref_words(s)).collect(),
        held,
    }
}

fn matches(q: &Query, r: &Read) -> bool {
    q.atoms.iter().all(|a| r.held.contains(a))
        && q.phrases
            .iter()
            .all(|p| r.words.iter().any(|w| w.windows(p.len()).any(|w| w == p.as_slice())))
}

// ---- events ------------------------------------------------------------

/// Words and identifiers, several spelled more than one way.
const VOCABULARY: &[&str] = &[
    "disk",
    "Disk",
    "FULL",
    "full",
    "is",
    "not",
    "on",
    "the",
    "error",
    "Error",
    "ﬁle",
    "file",
    "FILE",
    "Äpfel",
    "A\u{308}pfel",
    "äpfel",
    "café",
    "cafe\u{301}",
    "１２",
    "12",
    "Ｒｏｏｔ",
    "root",
    "10.0.0.1",
    "10.0.0.12",
    "10.0.0.1:443",
    "１０.０.０.１",
    "192.168.1.20",
    "2001:db8::1",
    "2001:DB8:0:0:0:0:0:1",
    "[2001:db8::1]:8080",
    "::1",
    "fe80::1%eth0",
    "alice@example.com",
    "Alice@Example.COM",
    "bob+ops@example.com",
    "mailto:carol@mail.example.com",
    "6f9619ff-8b86-d011-b42d-00c04fc964ff",
    "6F9619FF-8B86-D011-B42D-00C04FC964FF",
    "0f8fad5b-d9cb-469f-a165-70867728950e",
    "/var/log/x",
    "/var/log",
    "/var/log/x:12",
    "/etc/nginx/nginx.conf",
    "api/v1/events",
    "app.config.reload",
    "app.config",
    "App.Config.Reload",
    "https://example.com/a/b",
    "10.0.0.0/8",
    "read-only",
    "x_y",
    "v1.2.3",
    "1.5",
    "e.g.",
    "3",
    "443",
    "8080",
];

/// Few words, so that an event often holds every pair of a phrase but
/// not the phrase.
const FEW: &[&str] = &["a", "b", "c", "A", "b"];

const SEPARATORS: &[&str] = &[
    " ", " ", " ", ", ", ": ", "=", " (", ") ", ". ", "/", "\t", " - ", "'", "\"", "; ",
];

fn sentence(rng: &mut Rng, words: usize) -> String {
    sentence_of(rng, words, VOCABULARY)
}

fn sentence_of(rng: &mut Rng, words: usize, vocabulary: &[&str]) -> String {
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push_str(rng.pick(SEPARATORS));
        }
        s.push_str(rng.pick(vocabulary));
    }
    s
}

/// Hand-written events for the cases that matter most.
const HANDMADE: &[&str] = &[
    r#"{"action":"disk.alert","message":"Disk full on host 10.0.0.1, path /var/log/x"}"#,
    r#"{"action":"disk.alert","message":"full disk: 10.0.0.12 and 1 0 10"}"#,
    r#"{"action":"user.login","message":"login by Alice@Example.com from [2001:DB8::1]:443",
        "details":{"session":"6F9619FF-8B86-D011-B42D-00C04FC964FF","attempts":3}}"#,
    r#"{"action":"config.reload","message":"app.config.reload done","error":{"type":"ReloadError","message":"the disk is full"}}"#,
    r#"{"action":"file.open","message":"ﬁle Ä opened","details":{"Größe":"１２ KB","nested":[{"Key":"A\u0308pfel"}, 1.5]}}"#,
    r#"{"action":"file.open","message":"file ä opened, 12 KB"}"#,
    r#"{"action":"disk.alert","message":"is full, the disk is"}"#,
    r#"{"action":"disk.alert","message":"the disk","error":{"message":"disk is full"}}"#,
];

fn accept(i: usize, json: &[u8]) -> Event {
    let start = "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap().as_millisecond();
    let received = Timestamp::from_millisecond(start + 40 * i as i64).unwrap();
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&(i as u64).to_be_bytes());
    accept_json(json, received, event_id(received, random).unwrap()).unwrap()
}

fn random_event(rng: &mut Rng) -> Value {
    let mut e = json!({ "action": "test.event" });
    match rng.index(5) {
        0 => {}
        1 => {
            let n = 3 + rng.index(8);
            e["message"] = sentence_of(rng, n, FEW).into();
        }
        _ => {
            let n = 1 + rng.index(8);
            e["message"] = sentence(rng, n).into();
        }
    }
    if rng.index(4) == 0 {
        let (a, b) = (1 + rng.index(3), 1 + rng.index(6));
        e["error"] = json!({ "type": sentence(rng, a), "message": sentence(rng, b) });
    }
    if rng.index(2) == 0 {
        let mut details = serde_json::Map::new();
        for _ in 0..1 + rng.index(3) {
            let n = 1 + rng.index(2);
            let key = sentence(rng, n);
            let value = match rng.index(4) {
                0 => json!(rng.index(2000)),
                1 => json!([sentence(rng, 2), rng.index(50) as f64 + 0.5]),
                2 => {
                    let mut inner = serde_json::Map::new();
                    inner.insert(sentence(rng, 1), sentence(rng, 3).into());
                    Value::Object(inner)
                }
                _ => {
                    let n = 1 + rng.index(5);
                    json!(sentence(rng, n))
                }
            };
            details.insert(key, value);
        }
        e["details"] = Value::Object(details);
    }
    e
}

/// Events by ledger index; `None` is an entry that is not an event.
struct Events(Vec<Option<Event>>);

impl EventSource for Events {
    fn event(&self, index: u64) -> Result<Option<Event>, SourceError> {
        Ok(self.0.get(index as usize).cloned().flatten())
    }
}

fn build(entries: &[Option<Event>], dir: &std::path::Path) -> EventIndex {
    let index = EventIndex::open(dir, IndexOptions::default()).unwrap();
    for (i, e) in entries.iter().enumerate() {
        index.add(i as u64, e.as_ref()).unwrap();
        if i % 97 == 96 {
            index.commit().unwrap();
        }
    }
    index.commit().unwrap();
    index
}

fn corpus(seed: u64, random: usize) -> Vec<Option<Event>> {
    let mut rng = Rng::new(seed);
    let mut out: Vec<Option<Event>> = HANDMADE.iter().map(|j| Some(accept(0, j.as_bytes()))).collect();
    for i in 0..random {
        if i % 53 == 52 {
            out.push(None);
        }
        let json = serde_json::to_vec(&random_event(&mut rng)).unwrap();
        out.push(Some(accept(i, &json)));
    }
    out
}

// ---- the one check -----------------------------------------------------

/// Every reading of `text` on `index` against the reference; returns the
/// matching ledger indices.
fn check(index: &EventIndex, entries: &[Option<Read>], text: &str) -> Vec<u64> {
    let q = parse(text);
    let want: Vec<u64> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.as_ref().is_some_and(|e| matches(&q, e)))
        .map(|(i, _)| i as u64)
        .collect();
    let filter = Filter {
        text: Some(text.to_owned()),
        ..Filter::default()
    };
    assert_eq!(index.count(&filter).unwrap(), want.len() as u64, "count of {text:?}");
    let mut all = Vec::new();
    index
        .for_each(&filter, |i| {
            all.push(i);
            true
        })
        .unwrap();
    assert_eq!(all, want, "for_each of {text:?}");
    // Pages of 7 both ways, resumed from each page's last index.
    for order in [Order::OldestFirst, Order::NewestFirst] {
        let mut got: Vec<u64> = Vec::new();
        let mut after = None;
        loop {
            let page = index.search(&filter, &Page { order, limit: 7, after }).unwrap();
            got.extend(&page);
            match page.last() {
                Some(&last) if page.len() == 7 => after = Some(last),
                _ => break,
            }
        }
        if order == Order::NewestFirst {
            got.reverse();
        }
        assert_eq!(got, want, "pages {order:?} of {text:?}");
    }
    want
}

#[test]
fn hand_written_queries_find_what_a_reader_would() {
    let entries = corpus(1, 0);
    let dir = tempfile::tempdir().unwrap();
    let index = build(&entries, dir.path());
    index.set_event_source(Arc::new(Events(entries.clone())));
    let reads: Vec<Option<Read>> = entries.iter().map(|e| e.as_ref().map(read)).collect();
    let c = |text: &str| check(&index, &reads, text);
    // An address is one term: 10.0.0.12, and 10, 0 and 1 apart, are not it.
    assert_eq!(c("10.0.0.1"), [0]);
    assert_eq!(c("10 0 1"), [0, 1]);
    assert_eq!(c("１０.０.０.１"), [0], "full-width digits are digits");
    assert_eq!(c("2001:db8:0:0:0:0:0:1"), [2], "IPv6 in any spelling");
    assert_eq!(c("alice@example.com"), [2]);
    assert_eq!(c("example.com"), [2], "the domain of an address");
    assert_eq!(c("6f9619ff-8b86-d011-b42d-00c04fc964ff"), [2]);
    assert_eq!(c("/var/log/x"), [0]);
    assert_eq!(c("/var/log"), Vec::<u64>::new(), "a path is matched whole");
    assert_eq!(c("app.config.reload"), [3]);
    assert_eq!(c("APP.CONFIG.RELOAD"), [3]);
    assert_eq!(c("3"), [2], "numbers in details are text");
    // Phrases: order and adjacency within one string.
    assert_eq!(c("disk full"), [0, 1, 3, 6, 7]);
    assert_eq!(c(r#""disk full""#), [0]);
    assert_eq!(c(r#""full disk""#), [1]);
    assert_eq!(c(r#""disk is full""#), [3, 7]);
    assert_eq!(
        c(r#""the disk is full""#),
        [3],
        "every pair is in 6 and 7, the phrase is not"
    );
    assert_eq!(c(r#""done the disk""#), Vec::<u64>::new(), "not across fields");
    // Normalisation: ligature, combining marks, full-width digits, case.
    assert_eq!(c("file"), [4, 5]);
    assert_eq!(c("FILE ä"), [4, 5]);
    assert_eq!(c("äpfel"), [4]);
    assert_eq!(c("A\u{308}PFEL"), [4]);
    assert_eq!(c(r#""12 kb""#), [4, 5]);
    assert_eq!(c("größe"), [4]);
}

#[test]
fn random_events_and_queries_agree_with_a_naive_scan() {
    let entries = corpus(2, 1500);
    let dir = tempfile::tempdir().unwrap();
    let index = build(&entries, dir.path());
    index.set_event_source(Arc::new(Events(entries.clone())));
    let reads: Vec<Option<Read>> = entries.iter().map(|e| e.as_ref().map(read)).collect();
    let mut rng = Rng::new(3);
    let mut nonempty = 0;
    for _ in 0..300 {
        let text = match rng.index(5) {
            // A phrase of few words, whose pairs many events hold.
            4 => {
                let n = 3 + rng.index(2);
                format!("\"{}\"", sentence_of(&mut rng, n, FEW))
            }
            // Terms from the vocabulary, any spelling.
            0 | 1 => {
                let n = 1 + rng.index(3);
                sentence(&mut rng, n)
            }
            // A phrase cut from an event's own string, so that it matches.
            2 => {
                let Some(e) = entries[rng.index(entries.len())].as_ref() else {
                    continue;
                };
                let strings = strings(e);
                if strings.is_empty() {
                    continue;
                }
                let words = ref_words(&strings[rng.index(strings.len())]);
                if words.is_empty() {
                    continue;
                }
                let start = rng.index(words.len());
                let end = (start + 2 + rng.index(3)).min(words.len());
                format!("\"{}\"", words[start..end].join(" "))
            }
            // A random phrase, with a word beside it.
            _ => {
                let n = 2 + rng.index(3);
                format!("{} \"{}\"", rng.pick(VOCABULARY), sentence(&mut rng, n))
            }
        };
        if !check(&index, &reads, &text).is_empty() {
            nonempty += 1;
        }
    }
    assert!(nonempty > 100, "only {nonempty} queries matched anything");
}

#[test]
fn long_phrases_need_and_use_the_event_source() {
    let entries = corpus(1, 0);
    let dir = tempfile::tempdir().unwrap();
    let index = build(&entries, dir.path());
    let filter = |t: &str| Filter {
        text: Some(t.into()),
        ..Filter::default()
    };
    // Two words are answered from the pairs alone.
    assert_eq!(index.count(&filter(r#""disk full""#)).unwrap(), 1);
    let e = index.count(&filter(r#""disk is full""#)).unwrap_err();
    assert!(matches!(e, IndexError::NoEventSource { .. }), "{e}");
    assert!(e.to_string().contains("\"disk is full\""), "{e}");

    /// Counts its reads, and fails on one entry.
    struct Failing(Vec<Option<Event>>, AtomicUsize);
    impl EventSource for Failing {
        fn event(&self, index: u64) -> Result<Option<Event>, SourceError> {
            self.1.fetch_add(1, Ordering::Relaxed);
            if index == 3 {
                return Err("entry 3 is damaged".into());
            }
            Ok(self.0[index as usize].clone())
        }
    }
    let source = Arc::new(Failing(entries.clone(), AtomicUsize::new(0)));
    index.set_event_source(source.clone());
    let e = index
        .search(&filter(r#""disk is full""#), &Page::newest(10))
        .unwrap_err();
    assert!(matches!(e, IndexError::Source { index: 3, .. }), "{e}");
    assert!(
        e.to_string().contains("ledger entry 3") && e.to_string().contains("damaged"),
        "{e}"
    );
    // Only candidates holding every pair are read back.
    let before = source.1.load(Ordering::Relaxed);
    assert_eq!(index.count(&filter(r#""file ä opened""#)).unwrap(), 2);
    assert_eq!(source.1.load(Ordering::Relaxed) - before, 2);
}
