/// One row of a table: its values as text, or null, in column order, and
/// the line of the input it started on. Values live in one buffer that is
/// reused from row to row, so reading allocates nothing once warm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    text: String,
    ends: Vec<u32>,
    nulls: Vec<bool>,
    /// 1-based line (or record number) where the row starts in its input.
    pub line: u64,
}

impl Row {
    pub fn new() -> Row {
        Row::default()
    }

    /// A row of the given values (`None` is null), for tests and small inputs.
    pub fn of<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> Row {
        let mut row = Row::new();
        for v in values {
            match v {
                Some(v) => row.push(v),
                None => row.push_null(),
            }
        }
        row
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
        self.nulls.clear();
        self.line = 0;
    }

    /// Appends a value. Rows are bounded well below 4 GiB by every source.
    pub fn push(&mut self, value: &str) {
        self.text.push_str(value);
        self.ends.push(self.text.len() as u32);
        self.nulls.push(false);
    }

    pub fn push_null(&mut self) {
        self.ends.push(self.text.len() as u32);
        self.nulls.push(true);
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Value `i`, `None` when null or out of range.
    pub fn get(&self, i: usize) -> Option<&str> {
        if *self.nulls.get(i)? {
            return None;
        }
        Some(self.text_at(i))
    }

    /// Value `i` as text: empty for null or out of range.
    pub fn text(&self, i: usize) -> &str {
        if i >= self.ends.len() {
            return "";
        }
        self.text_at(i)
    }

    pub fn is_null(&self, i: usize) -> bool {
        self.nulls.get(i).copied().unwrap_or(true)
    }

    fn text_at(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    /// Bytes held by the values, for memory accounting.
    pub fn bytes(&self) -> usize {
        self.text.len() + self.ends.len() * 5
    }

    /// The values, null as `None`.
    pub fn values(&self) -> impl Iterator<Item = Option<&str>> {
        (0..self.len()).map(|i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_nulls_round_trip() {
        let row = Row::of([Some("a"), None, Some(""), Some("é")]);
        assert_eq!(row.len(), 4);
        assert_eq!(
            row.values().collect::<Vec<_>>(),
            vec![Some("a"), None, Some(""), Some("é")]
        );
        assert!(row.is_null(1) && !row.is_null(2) && row.is_null(9));
        assert_eq!(row.text(1), "");
        assert_eq!(row.get(9), None);
    }
}
