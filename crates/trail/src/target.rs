//! The user's syntax for a target, shared by the CLI's `--target` and the
//! server's `target` parameter: `TYPE:ID` (one target with both) or `TYPE`
//! (any target of that type).

/// The type and, if given, the id of `spec`. The error completes
/// "`<parameter>: …`".
pub fn parse_target(spec: &str) -> Result<(String, Option<String>), String> {
    match spec.split_once(':') {
        Some((kind, id)) if !kind.is_empty() && !id.is_empty() => Ok((kind.to_owned(), Some(id.to_owned()))),
        None if !spec.is_empty() => Ok((spec.to_owned(), None)),
        _ => Err(format!("{spec:?}: use TYPE:ID (e.g. lead:LEAD-001) or TYPE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_and_id_or_type_alone() {
        assert_eq!(parse_target("lead:LEAD-1"), Ok(("lead".into(), Some("LEAD-1".into()))));
        // Only the first colon separates: ids may hold colons.
        assert_eq!(
            parse_target("url:https://x"),
            Ok(("url".into(), Some("https://x".into())))
        );
        assert_eq!(parse_target("lead"), Ok(("lead".into(), None)));
        for bad in ["", ":x", "lead:"] {
            assert!(parse_target(bad).is_err(), "{bad:?}");
        }
    }
}
