use serde::Serialize;

/// What happened to a key between the left input and the right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Only on the right.
    Added,
    /// Only on the left.
    Removed,
    /// On both sides under one key, with at least one compared value different.
    Changed,
    /// More than one row under the key on at least one side: its rows take
    /// no part in the comparison (see [`Duplicate`]).
    Duplicate,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
            ChangeKind::Duplicate => "duplicate",
        }
    }
}

/// One compared column whose value differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FieldChange {
    /// The column's name on the right (after renames).
    pub column: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// A key found on more than one row of an input: how many rows each side
/// has under it, and the first lines of each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Duplicate {
    pub left_rows: u64,
    pub right_rows: u64,
    /// Lines of the first rows on the left, in input order, at most
    /// [`crate::diff::LINES_PER_DUPLICATE`].
    pub left_lines: Vec<u64>,
    /// Lines of the first rows on the right, likewise.
    pub right_lines: Vec<u64>,
}

/// One difference under one key, keyed by the values of the key columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// The key's values as read (before case or whitespace folding): from
    /// the left row for removed and changed, from the right for added, from
    /// the first row read for duplicates (left first).
    pub key: Vec<Option<String>>,
    /// Line of the row in the left input (removed, changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_line: Option<u64>,
    /// Line of the row in the right input (added, changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub right_line: Option<u64>,
    /// The whole row, in its side's column order: the right row for added,
    /// the left row for removed; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub row: Vec<Option<String>>,
    /// The changed fields, in the left input's column order; empty unless
    /// changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// Row counts and lines under a duplicated key; only for duplicates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<Duplicate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_read_back_as_written() {
        let changed = Change {
            kind: ChangeKind::Changed,
            key: vec![Some("7".into()), None],
            left_line: Some(3),
            right_line: Some(9),
            row: Vec::new(),
            fields: vec![FieldChange {
                column: "amount".into(),
                old: Some("1".into()),
                new: None,
            }],
            duplicate: None,
        };
        let added = Change {
            kind: ChangeKind::Added,
            row: vec![Some("x".into())],
            fields: Vec::new(),
            ..changed.clone()
        };
        for c in [changed, added] {
            let text = serde_json::to_string(&c).expect("serialises");
            assert_eq!(serde_json::from_str::<Change>(&text).expect("reads back"), c, "{text}");
        }
    }
}
