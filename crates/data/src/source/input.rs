//! Reading a file input: a reader that counts the bytes it hands out (for
//! progress), and a line reader that refuses a line past its bound before
//! buffering the rest of it.

use std::io::{self, BufRead, Read};

/// Wraps a file and counts the bytes read from it, for progress.
pub(crate) struct CountingReader<R> {
    inner: R,
    pub read: u64,
}

impl<R: Read> CountingReader<R> {
    pub fn new(inner: R) -> CountingReader<R> {
        CountingReader { inner, read: 0 }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Reads one line (without its `\n` or `\r\n`) into `buf`, cleared first.
/// Returns the bytes consumed, terminator included; `Ok(None)` at the end
/// of input. Refuses with [`LineError::TooLong`] once the line passes `max`
/// bytes, without reading the rest of it.
pub(crate) fn read_line_bounded<R: BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: u64,
) -> Result<Option<usize>, LineError> {
    buf.clear();
    let mut consumed = 0usize;
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LineError::Io(e)),
        };
        if available.is_empty() {
            if consumed == 0 {
                return Ok(None);
            }
            break;
        }
        let (take, done) = match memchr_newline(available) {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        buf.extend_from_slice(&available[..take]);
        reader.consume(take);
        consumed += take;
        if done {
            break;
        }
        if buf.len() as u64 > max {
            return Err(LineError::TooLong);
        }
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    if buf.len() as u64 > max {
        return Err(LineError::TooLong);
    }
    Ok(Some(consumed))
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[derive(Debug)]
pub(crate) enum LineError {
    Io(io::Error),
    TooLong,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_on_lf_and_crlf_and_stop_past_the_bound() {
        let mut input = io::BufReader::with_capacity(4, &b"ab\r\ncd\n\nlast"[..]);
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        while let Some(n) = read_line_bounded(&mut input, &mut buf, 10).expect("line") {
            lines.push((String::from_utf8(buf.clone()).expect("utf-8"), n));
        }
        let want: Vec<(String, usize)> = vec![("ab".into(), 4), ("cd".into(), 3), ("".into(), 1), ("last".into(), 4)];
        assert_eq!(lines, want);

        let mut input = io::BufReader::with_capacity(4, &b"0123456789abc\nx\n"[..]);
        assert!(matches!(
            read_line_bounded(&mut input, &mut buf, 10),
            Err(LineError::TooLong)
        ));
    }
}
