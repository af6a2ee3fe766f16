//! Globs over action names: `*` is any run of characters (dots included),
//! `?` exactly one character. Shared by the query index and alert rules so
//! that `lead.*` means the same everywhere.
//!
//! A pattern is compiled once ([`Glob::new`]) and then matched against many
//! actions: a query matches it against every distinct action of every
//! segment, an alert rule against every event. Matching a compiled pattern
//! costs about one pass over the text whatever the pattern's length (see
//! [`Glob::matches`]), and patterns are bounded by [`MAX_PATTERN_CHARS`]
//! where a client can send one.

/// The longest glob pattern, in characters, the server and alert rules
/// accept. Actions are at most [`crate::limits::NAME_CHARS`] characters,
/// so a longer pattern only costs work; the bound leaves room for stars.
pub const MAX_PATTERN_CHARS: usize = 1024;

/// Whether `pattern` has glob characters at all.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// The part of `pattern` before its first glob character: every match
/// starts with it.
pub fn literal_prefix(pattern: &str) -> &str {
    &pattern[..pattern.find(['*', '?']).unwrap_or(pattern.len())]
}

/// Whether `text` matches the glob `pattern` (`*` any run, `?` one char).
/// Compiles the pattern each call: to match one pattern against many
/// texts, compile it once with [`Glob::new`].
pub fn glob_match(pattern: &str, text: &str) -> bool {
    Glob::new(pattern).matches(text)
}

/// One run of a segment: literal text, or a number of `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    AnyChars(usize),
}

/// The part of a pattern between two stars (or an end): it matches a
/// fixed number of characters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Segment {
    pieces: Vec<Piece>,
    /// Characters it matches.
    chars: usize,
}

impl Segment {
    fn parse(text: &str) -> Segment {
        let mut s = Segment::default();
        let mut literal = String::new();
        for c in text.chars() {
            s.chars += 1;
            if c == '?' {
                if !literal.is_empty() {
                    s.pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                match s.pieces.last_mut() {
                    Some(Piece::AnyChars(n)) => *n += 1,
                    _ => s.pieces.push(Piece::AnyChars(1)),
                }
            } else {
                literal.push(c);
            }
        }
        if !literal.is_empty() {
            s.pieces.push(Piece::Literal(literal));
        }
        s
    }

    /// Where a match of this segment starting at byte `at` of `text` ends.
    fn match_at(&self, text: &str, mut at: usize) -> Option<usize> {
        for piece in &self.pieces {
            match piece {
                Piece::Literal(l) => {
                    if !text.get(at..)?.starts_with(l.as_str()) {
                        return None;
                    }
                    at += l.len();
                }
                Piece::AnyChars(n) => {
                    let mut rest = text.get(at..)?.chars();
                    for _ in 0..*n {
                        at += rest.next()?.len_utf8();
                    }
                }
            }
        }
        Some(at)
    }

    /// The end of the leftmost match within `text[from..]`. A literal
    /// first piece is found with `str::find` (a substring search), so
    /// candidates are only the places where it occurs.
    fn find(&self, text: &str, mut from: usize) -> Option<usize> {
        loop {
            let start = match self.pieces.first() {
                Some(Piece::Literal(l)) => from + text.get(from..)?.find(l.as_str())?,
                _ => from,
            };
            if let Some(end) = self.match_at(text, start) {
                return Some(end);
            }
            // The next candidate starts one character later.
            from = start + text.get(start..)?.chars().next()?.len_utf8();
        }
    }
}

/// A compiled glob pattern.
///
/// The pattern splits at its stars into segments of fixed length. Without
/// a star the text must be the one segment. With stars the first segment
/// is anchored at the start, the last at the end, and each segment between
/// is matched at its leftmost place after the one before: a star absorbs
/// anything, so the leftmost place leaves the most text for the rest, and
/// nothing is ever retried. A text shorter than the characters the pattern
/// needs is refused before any search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    /// At least two when the pattern has a star: first and last may be empty.
    segments: Vec<Segment>,
    starred: bool,
    /// Characters every match needs (the pattern less its stars).
    min_chars: usize,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let segments: Vec<Segment> = pattern.split('*').map(Segment::parse).collect();
        let min_chars = segments.iter().map(|s| s.chars).sum();
        Glob {
            starred: segments.len() > 1,
            segments,
            min_chars,
        }
    }

    /// Whether `text` matches: O(text + pattern) for literal segments, and
    /// at worst O(text × segment) for a segment that starts with `?`.
    pub fn matches(&self, text: &str) -> bool {
        // A text that cannot hold the pattern's characters never matches;
        // comparing byte length first skips counting characters when even
        // the bytes fall short.
        if text.len() < self.min_chars || text.chars().count() < self.min_chars {
            return false;
        }
        let (Some(first), Some(last)) = (self.segments.first(), self.segments.last()) else {
            return text.is_empty();
        };
        if !self.starred {
            return first.match_at(text, 0) == Some(text.len());
        }
        let Some(at) = first.match_at(text, 0) else {
            return false;
        };
        if last.chars == 0 {
            return self.middle(text, at, text.len());
        }
        // The last segment's place: `last.chars` characters before the end,
        // never before `at` since the text holds at least `min_chars`.
        let Some((tail, _)) = text.char_indices().rev().nth(last.chars - 1) else {
            return false;
        };
        tail >= at && last.match_at(text, tail) == Some(text.len()) && self.middle(text, at, tail)
    }

    /// Whether the segments between the first and the last occur in order
    /// within `text[from..to]`.
    fn middle(&self, text: &str, mut from: usize, to: usize) -> bool {
        let Some(bounded) = text.get(..to) else { return false };
        let inner = &self.segments[1..self.segments.len() - 1];
        for segment in inner.iter().filter(|s| s.chars > 0) {
            match segment.find(bounded, from) {
                Some(end) => from = end,
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, for comparison: dynamic programming over characters.
    fn reference(pattern: &str, text: &str) -> bool {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        // m[j]: pattern[..i] matches text[..j].
        let mut m = vec![false; t.len() + 1];
        m[0] = true;
        for &pc in &p {
            let mut next = vec![false; t.len() + 1];
            if pc == '*' {
                let mut any = false;
                for j in 0..=t.len() {
                    any |= m[j];
                    next[j] = any;
                }
            } else {
                for j in 1..=t.len() {
                    next[j] = m[j - 1] && (pc == '?' || pc == t[j - 1]);
                }
            }
            m = next;
        }
        m[t.len()]
    }

    fn check(pattern: &str, text: &str, expected: bool) {
        assert_eq!(glob_match(pattern, text), expected, "{pattern:?} vs {text:?}");
        assert_eq!(reference(pattern, text), expected, "reference: {pattern:?} vs {text:?}");
    }

    #[test]
    fn globs() {
        let cases = [
            ("lead.*", "lead.created", true),
            ("lead.*", "lead.", true),
            ("lead.*", "lead", false),
            ("lead.*", "leads.created", false),
            ("*.deleted", "invoice.line.deleted", true),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("?", "", false),
            ("?", "é", true),
            ("??", "é", false),
            ("a?c", "abc", true),
            ("a?c", "abbc", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*a*", "bbb", false),
            ("**", "x", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("*aa*aa", "aaa", false),
            ("*ab?", "abab", false),
            ("*ab?", "ababx", true),
            ("*?é", "aé", true),
            ("*?é", "é", false),
            ("x*?y*", "xzy", true),
            ("*b?d*", "abcbxd", true),
            ("é*é", "é", false),
        ];
        for (pattern, text, expected) in cases {
            check(pattern, text, expected);
        }
        assert_eq!(literal_prefix("lead.*x"), "lead.");
        assert_eq!(literal_prefix("?x"), "");
        assert!(!is_glob("lead.created"));
    }

    #[test]
    fn a_long_pattern_costs_one_pass_over_each_text() {
        // `*a*a*…*b` against actions without a `b`: the shape that took
        // seconds per query when every call re-read the whole pattern.
        let pattern = "*a".repeat(8 * 1024) + "*b";
        let glob = Glob::new(&pattern);
        assert!(!glob.matches(&"a".repeat(100)));
        let text = "a".repeat(8 * 1024) + "b";
        assert!(glob.matches(&text));
        assert!(!glob.matches(&text[1..]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn agrees_with_the_definition(pattern in "[ab.é*?]{0,12}", text in "[ab.é]{0,14}") {
            prop_assert_eq!(glob_match(&pattern, &text), reference(&pattern, &text), "{:?} vs {:?}", pattern, text);
        }

        #[test]
        fn agrees_on_texts_built_to_match(pattern in "[ab*?]{0,10}", fill in "[ab]{0,3}") {
            // Replace each star by `fill` and each `?` by `a`: a match.
            let text: String = pattern
                .chars()
                .map(|c| match c {
                    '*' => fill.clone(),
                    '?' => "a".to_string(),
                    c => c.to_string(),
                })
                .collect();
            prop_assert!(glob_match(&pattern, &text), "{:?} vs {:?}", pattern, text);
        }
    }
}
