//! Globs over action names: `*` is any run of characters (dots included),
//! `?` exactly one character. Shared by the query index and alert rules so
//! that `lead.*` means the same everywhere.

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
///
/// Linear backtracking to the last `*` only, which is enough because a
/// later `*` can absorb anything an earlier one could.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases = [
            ("lead.*", "lead.created", true),
            ("lead.*", "lead.", true),
            ("lead.*", "lead", false),
            ("lead.*", "leads.created", false),
            ("*.deleted", "invoice.line.deleted", true),
            ("*", "", true),
            ("?", "", false),
            ("?", "é", true),
            ("a?c", "abc", true),
            ("a?c", "abbc", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*a*", "bbb", false),
            ("**", "x", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(glob_match(pattern, text), expected, "{pattern} vs {text}");
        }
        assert_eq!(literal_prefix("lead.*x"), "lead.");
        assert_eq!(literal_prefix("?x"), "");
        assert!(!is_glob("lead.created"));
    }
}
