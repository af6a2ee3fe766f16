use serde::Serialize;

/// What happened to a row between the left input and the right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Only on the right.
    Added,
    /// Only on the left.
    Removed,
    /// On both sides under one key, with at least one compared value different.
    Changed,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
        }
    }
}

/// One compared column whose value differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub column: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// One row difference, keyed by the values of the key columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub key: Vec<Option<String>>,
    /// Line of the row in the left input (removed, changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_line: Option<u64>,
    /// Line of the row in the right input (added, changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub right_line: Option<u64>,
    /// The whole row, in its side's column order: the right row for added,
    /// the left row for removed; empty for changed (see `fields`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub row: Vec<Option<String>>,
    /// The changed fields; empty for added and removed rows.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}
