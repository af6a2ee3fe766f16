//! Guessing the dialect of a delimited file from its first bytes: which
//! delimiter and quote character give every sampled record the same number
//! of fields. Not a validator: the reader still refuses a ragged row later
//! in the file.

use std::io::Read;
use std::path::Path;

use crate::DataError;

/// Bytes read from the start of a file to guess its dialect.
const SAMPLE_BYTES: usize = 64 << 10;
/// Records of the sample that are compared.
const SAMPLE_RECORDS: usize = 200;

const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];
const QUOTES: [u8; 2] = [b'"', b'\''];

/// A delimiter and a quote character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub delimiter: u8,
    pub quote: u8,
}

/// Guesses the dialect of the delimited file at `path` from its first
/// 64 KiB. Each candidate (delimiter `,` `;` tab `|`, quote `"` or `'`)
/// splits the sampled records; a candidate that gives every record the
/// same number of fields, more than one, beats one that does not, and
/// among those the most fields wins; ties go to the earlier candidate, so
/// `,` and `"` unless the sample says otherwise. A file of one column
/// reads as `,` and `"`.
pub fn sniff_dialect(path: &Path) -> Result<Dialect, DataError> {
    sniff_file(path, None, None)
}

/// Like [`sniff_dialect`], with the delimiter or the quote fixed when given.
pub(crate) fn sniff_file(path: &Path, delimiter: Option<u8>, quote: Option<u8>) -> Result<Dialect, DataError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| DataError::io(&name, &e))?;
    let mut sample = Vec::with_capacity(SAMPLE_BYTES);
    file.take(SAMPLE_BYTES as u64)
        .read_to_end(&mut sample)
        .map_err(|e| DataError::io(&name, &e))?;
    let whole = sample.len() < SAMPLE_BYTES;
    Ok(sniff_among(&sample, whole, delimiter, quote))
}

/// The dialect of `sample`; `whole` says whether it is the entire file
/// (otherwise its last record may be cut and is ignored).
#[cfg(test)]
fn sniff_bytes(sample: &[u8], whole: bool) -> Dialect {
    sniff_among(sample, whole, None, None)
}

fn sniff_among(sample: &[u8], whole: bool, delimiter: Option<u8>, quote: Option<u8>) -> Dialect {
    let quotes = match quote {
        Some(q) => vec![q],
        None => QUOTES.to_vec(),
    };
    let delimiters = match delimiter {
        Some(d) => vec![d],
        None => DELIMITERS.to_vec(),
    };
    let mut best = Dialect {
        delimiter: delimiters[0],
        quote: quotes[0],
    };
    let mut best_score = (false, 0usize, 0usize);
    for &quote in &quotes {
        for &delimiter in &delimiters {
            let score = score(sample, whole, delimiter, quote);
            if score > best_score {
                best_score = score;
                best = Dialect { delimiter, quote };
            }
        }
    }
    best
}

/// (all records agree, fields per record, records agreeing with the most
/// common count) — compared in that order.
fn score(sample: &[u8], whole: bool, delimiter: u8, quote: u8) -> (bool, usize, usize) {
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quote(quote)
        .has_headers(false)
        .flexible(true)
        .from_reader(sample);
    let mut counts: Vec<usize> = Vec::new();
    let mut record = ::csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => counts.push(record.len()),
            Ok(false) => break,
            // A quote never closed within the sample: either a cut record
            // or the wrong quote; the counts so far decide.
            Err(_) => break,
        }
        if counts.len() > SAMPLE_RECORDS {
            break;
        }
    }
    if !whole && counts.len() > 1 && counts.len() <= SAMPLE_RECORDS {
        counts.pop();
    }
    counts.truncate(SAMPLE_RECORDS);
    let Some(&first) = counts.first() else {
        return (false, 0, 0);
    };
    let mut tally: Vec<(usize, usize)> = Vec::new();
    for &c in &counts {
        match tally.iter_mut().find(|(n, _)| *n == c) {
            Some(t) => t.1 += 1,
            None => tally.push((c, 1)),
        }
    }
    let (mode, agreeing) = tally.iter().copied().max_by_key(|&(n, k)| (k, n)).unwrap_or((first, 0));
    if mode < 2 {
        return (false, 0, 0);
    }
    let consistent = agreeing == counts.len();
    if consistent {
        (true, mode, agreeing)
    } else {
        (false, agreeing, mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sample: &str, delimiter: u8, quote: u8) {
        let got = sniff_bytes(sample.as_bytes(), true);
        assert_eq!(
            (got.delimiter as char, got.quote as char),
            (delimiter as char, quote as char),
            "{sample:?}"
        );
    }

    #[test]
    fn delimiters_and_quotes_by_consistent_field_counts() {
        check("a,b,c\n1,2,3\n4,5,6\n", b',', b'"');
        check("a;b;c\n1,5;2;3\n4;5;6\n", b';', b'"');
        check("a\tb\n1\t2 , 3\n", b'\t', b'"');
        check("a|b|c\nx|y|z\n", b'|', b'"');
        // Commas inside double quotes do not count.
        check("name,note\n\"Doe, J\",x\n\"Roe, R\",y\n", b',', b'"');
        // Commas inside single quotes: only `'` keeps two fields a row.
        check("name,note\n'Doe, J',x\n'Roe, R',y\n", b',', b'\'');
        // An apostrophe in text does not make `'` the quote.
        check("name,note\nO'Brien,x\nD'Arcy,y\n", b',', b'"');
        // One column: the default.
        check("id\n1\n2\n", b',', b'"');
        // Semicolons win when commas are decimal separators.
        check("a;b\n1,5;2,25\n3,0;4\n", b';', b'"');
    }

    #[test]
    fn a_given_delimiter_or_quote_is_kept() {
        let sample = b"a,b,c;d\n1,2,3;4\n";
        let got = sniff_among(sample, true, None, None);
        assert_eq!((got.delimiter, got.quote), (b',', b'"'));
        let got = sniff_among(sample, true, Some(b';'), None);
        assert_eq!((got.delimiter, got.quote), (b';', b'"'));
        let got = sniff_among(b"a;b\n'x;y';z\n", true, None, Some(b'\''));
        assert_eq!((got.delimiter, got.quote), (b';', b'\''));
    }

    #[test]
    fn a_cut_last_record_is_ignored() {
        let got = sniff_bytes(b"a;b;c\n1;2;3\n4;5", false);
        assert_eq!(got.delimiter, b';');
    }
}
