use std::fmt;

/// A refusal, naming what went wrong and where: the input (file name or
/// source address), and when known the line, the column and the byte
/// offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    /// The input: a file name or a source address (without password).
    pub input: String,
    /// 1-based line (or record number, for sources without lines).
    pub line: Option<u64>,
    /// Column name (or 1-based number when the header is unknown).
    pub column: Option<String>,
    /// Byte offset from the start of the input.
    pub byte: Option<u64>,
    pub message: String,
}

impl DataError {
    pub fn new(input: impl Into<String>, message: impl Into<String>) -> DataError {
        DataError {
            input: input.into(),
            line: None,
            column: None,
            byte: None,
            message: message.into(),
        }
    }

    pub fn at_line(mut self, line: u64) -> DataError {
        self.line = Some(line);
        self
    }

    pub fn in_column(mut self, column: impl Into<String>) -> DataError {
        self.column = Some(column.into());
        self
    }

    pub fn at_byte(mut self, byte: u64) -> DataError {
        self.byte = Some(byte);
        self
    }

    /// An I/O failure on `input`.
    pub fn io(input: impl Into<String>, err: &std::io::Error) -> DataError {
        DataError::new(input, err.to_string())
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.input)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(column) = &self.column {
            write!(f, ": column {column:?}")?;
        }
        if let Some(byte) = self.byte {
            write!(f, " (byte {byte})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for DataError {}
