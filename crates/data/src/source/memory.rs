use crate::{DataError, Row, Source};

/// A table held in memory: for tests, and for callers that already have
/// their rows.
pub struct MemorySource {
    name: String,
    columns: Vec<String>,
    rows: std::vec::IntoIter<Vec<Option<String>>>,
    line: u64,
}

impl MemorySource {
    /// A table named `name` with these columns and rows. Row `i` counts as
    /// line `i + 2`, as if under a header line.
    pub fn new(name: &str, columns: &[&str], rows: Vec<Vec<Option<String>>>) -> MemorySource {
        MemorySource {
            name: name.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: rows.into_iter(),
            line: 1,
        }
    }
}

impl Source for MemorySource {
    fn name(&self) -> &str {
        &self.name
    }

    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Row) -> Result<bool, DataError> {
        row.clear();
        let Some(values) = self.rows.next() else {
            return Ok(false);
        };
        self.line += 1;
        if values.len() != self.columns.len() {
            return Err(DataError::new(
                &self.name,
                format!("{} values, expected {}", values.len(), self.columns.len()),
            )
            .at_line(self.line));
        }
        for v in &values {
            match v {
                Some(v) => row.push(v),
                None => row.push_null(),
            }
        }
        row.line = self.line;
        Ok(true)
    }
}
