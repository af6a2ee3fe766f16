//! A decoder of the messages of PostgreSQL's `pgoutput` logical-decoding
//! plugin, protocol version 1 (PostgreSQL's "Logical Replication Message
//! Formats"), with values in text form: `Begin`, `Commit`, `Relation`,
//! `Insert`, `Update`, `Delete`, `Truncate`, `Message` (from
//! `pg_logical_emit_message`), `Origin` and `Type`.
//!
//! It decodes one message's bytes at a time and keeps no state: which
//! relation an `Insert` names is the caller's to remember from the last
//! `Relation` message. Every refusal names the message kind and the byte
//! offset where the input stopped making sense. Not here: streamed
//! (protocol 2) or two-phase (protocol 3) messages, binary values.

use thiserror::Error;

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Begin {
        /// The LSN of the transaction's commit record.
        final_lsn: u64,
        /// Microseconds since 2000-01-01 00:00 UTC.
        commit_time: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: u64,
        /// The end of the commit record: where decoding resumes after it.
        end_lsn: u64,
        commit_time: i64,
    },
    Relation(Relation),
    Insert {
        relation: u32,
        new: Vec<Value<'a>>,
    },
    Update {
        relation: u32,
        /// The old row: `Key` (only the replica identity's columns, sent
        /// when they changed) or `Full` (REPLICA IDENTITY FULL).
        old: Option<(OldKind, Vec<Value<'a>>)>,
        new: Vec<Value<'a>>,
    },
    Delete {
        relation: u32,
        old: (OldKind, Vec<Value<'a>>),
    },
    Truncate {
        relations: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    Message {
        transactional: bool,
        lsn: u64,
        prefix: &'a str,
        content: &'a [u8],
    },
    Origin,
    Type,
}

/// Which old row image an update or delete carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKind {
    Key,
    Full,
}

/// A table as the stream describes it, sent before its first change in a
/// decoding session and again after it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Part of the replica identity (all columns with REPLICA IDENTITY FULL).
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
}

/// One column's value in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Null,
    /// A TOASTed value the update did not change: not in the stream.
    UnchangedToast,
    /// The type's text output.
    Text(&'a [u8]),
}

/// Bytes that are not a `pgoutput` message.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("pgoutput message {kind:?} at byte {offset}: {reason}")]
pub struct DecodeError {
    pub kind: char,
    pub offset: usize,
    pub reason: String,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    kind: char,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, reason: impl Into<String>) -> Result<T, DecodeError> {
        Err(DecodeError {
            kind: self.kind,
            offset: self.at,
            reason: reason.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() - self.at < n {
            return self.fail(format!("needs {n} more bytes, {} left", self.bytes.len() - self.at));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut out = [0u8; 8];
        out.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(out))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(self.u64()? as i64)
    }

    /// A NUL-terminated string.
    fn string(&mut self) -> Result<&'a str, DecodeError> {
        let rest = &self.bytes[self.at..];
        let Some(end) = rest.iter().position(|&b| b == 0) else {
            return self.fail("string without its terminating NUL");
        };
        let Ok(s) = std::str::from_utf8(&rest[..end]) else {
            return self.fail("string is not UTF-8");
        };
        self.at += end + 1;
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Vec<Value<'a>>, DecodeError> {
        let n = self.u16()? as usize;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(match self.u8()? {
                b'n' => Value::Null,
                b'u' => Value::UnchangedToast,
                b't' => {
                    let len = self.u32()? as usize;
                    Value::Text(self.take(len)?)
                }
                b'b' => return self.fail("binary column values are not asked for"),
                other => return self.fail(format!("unknown column kind {:?}", other as char)),
            });
        }
        Ok(out)
    }

    fn old(&mut self, tag: u8) -> Result<(OldKind, Vec<Value<'a>>), DecodeError> {
        let kind = match tag {
            b'K' => OldKind::Key,
            b'O' => OldKind::Full,
            other => return self.fail(format!("expected K or O, found {:?}", other as char)),
        };
        Ok((kind, self.tuple()?))
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.at != self.bytes.len() {
            return self.fail(format!("{} bytes after the message", self.bytes.len() - self.at));
        }
        Ok(())
    }
}

/// Decode one message.
pub fn decode(bytes: &[u8]) -> Result<Message<'_>, DecodeError> {
    let Some(&tag) = bytes.first() else {
        return Err(DecodeError {
            kind: '?',
            offset: 0,
            reason: "empty message".into(),
        });
    };
    let mut r = Reader {
        bytes,
        at: 1,
        kind: tag as char,
    };
    let message = match tag {
        b'B' => Message::Begin {
            final_lsn: r.u64()?,
            commit_time: r.i64()?,
            xid: r.u32()?,
        },
        b'C' => {
            let _flags = r.u8()?;
            Message::Commit {
                commit_lsn: r.u64()?,
                end_lsn: r.u64()?,
                commit_time: r.i64()?,
            }
        }
        b'R' => {
            let id = r.u32()?;
            let namespace = r.string()?.to_string();
            let name = r.string()?.to_string();
            let replica_identity = r.u8()?;
            let n = r.u16()? as usize;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                let flags = r.u8()?;
                let name = r.string()?.to_string();
                let type_oid = r.u32()?;
                let _typmod = r.u32()?;
                columns.push(Column {
                    key: flags & 1 == 1,
                    name,
                    type_oid,
                });
            }
            Message::Relation(Relation {
                id,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'I' => {
            let relation = r.u32()?;
            match r.u8()? {
                b'N' => {}
                other => return r.fail(format!("expected N, found {:?}", other as char)),
            }
            Message::Insert {
                relation,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let relation = r.u32()?;
            let mut tag = r.u8()?;
            let old = if tag == b'K' || tag == b'O' {
                let old = r.old(tag)?;
                tag = r.u8()?;
                Some(old)
            } else {
                None
            };
            if tag != b'N' {
                return r.fail(format!("expected N, found {:?}", tag as char));
            }
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32()?;
            let tag = r.u8()?;
            Message::Delete {
                relation,
                old: r.old(tag)?,
            }
        }
        b'T' => {
            let n = r.u32()? as usize;
            let options = r.u8()?;
            let mut relations = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                relations.push(r.u32()?);
            }
            Message::Truncate {
                relations,
                cascade: options & 1 == 1,
                restart_identity: options & 2 == 2,
            }
        }
        b'M' => {
            let flags = r.u8()?;
            let lsn = r.u64()?;
            let prefix = r.string()?;
            let len = r.u32()? as usize;
            Message::Message {
                transactional: flags & 1 == 1,
                lsn,
                prefix,
                content: r.take(len)?,
            }
        }
        b'O' => {
            let _lsn = r.u64()?;
            let _name = r.string()?;
            Message::Origin
        }
        b'Y' => {
            let _oid = r.u32()?;
            let _namespace = r.string()?;
            let _name = r.string()?;
            Message::Type
        }
        _ => return r.fail("unknown message kind (streamed or two-phase messages are not asked for)"),
    };
    r.end()?;
    Ok(message)
}

/// An LSN as PostgreSQL writes it: `16/B374D848`.
pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parse an LSN written as PostgreSQL writes it.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be32(v: u32) -> [u8; 4] {
        v.to_be_bytes()
    }

    fn check(bytes: &[u8], expected: Result<Message<'_>, DecodeError>) {
        assert_eq!(decode(bytes), expected, "bytes {bytes:?}");
    }

    fn tuple(values: &[Option<&str>]) -> Vec<u8> {
        let mut out = (values.len() as u16).to_be_bytes().to_vec();
        for v in values {
            match v {
                None => out.push(b'n'),
                Some(t) => {
                    out.push(b't');
                    out.extend(be32(t.len() as u32));
                    out.extend(t.as_bytes());
                }
            }
        }
        out
    }

    #[test]
    fn begin_and_commit() {
        let mut b = vec![b'B'];
        b.extend(0x0000_0016_B374_D848u64.to_be_bytes());
        b.extend(1_000_000i64.to_be_bytes());
        b.extend(be32(742));
        check(
            &b,
            Ok(Message::Begin {
                final_lsn: 0x16_B374_D848,
                commit_time: 1_000_000,
                xid: 742,
            }),
        );
        let mut c = vec![b'C', 0];
        c.extend(10u64.to_be_bytes());
        c.extend(20u64.to_be_bytes());
        c.extend(5i64.to_be_bytes());
        check(
            &c,
            Ok(Message::Commit {
                commit_lsn: 10,
                end_lsn: 20,
                commit_time: 5,
            }),
        );
        // Cut short: the offset is where the input ran out.
        check(
            &c[..12],
            Err(DecodeError {
                kind: 'C',
                offset: 10,
                reason: "needs 8 more bytes, 2 left".into(),
            }),
        );
    }

    #[test]
    fn relation_and_rows() {
        let mut r = vec![b'R'];
        r.extend(be32(16384));
        r.extend(b"public\0items\0f");
        r.extend(2u16.to_be_bytes());
        r.push(1);
        r.extend(b"id\0");
        r.extend(be32(23));
        r.extend(be32(u32::MAX));
        r.push(0);
        r.extend(b"note\0");
        r.extend(be32(25));
        r.extend(be32(u32::MAX));
        check(
            &r,
            Ok(Message::Relation(Relation {
                id: 16384,
                namespace: "public".into(),
                name: "items".into(),
                replica_identity: b'f',
                columns: vec![
                    Column {
                        key: true,
                        name: "id".into(),
                        type_oid: 23,
                    },
                    Column {
                        key: false,
                        name: "note".into(),
                        type_oid: 25,
                    },
                ],
            })),
        );

        let mut i = vec![b'I'];
        i.extend(be32(16384));
        i.push(b'N');
        i.extend(tuple(&[Some("17"), None]));
        check(
            &i,
            Ok(Message::Insert {
                relation: 16384,
                new: vec![Value::Text(b"17"), Value::Null],
            }),
        );

        let mut u = vec![b'U'];
        u.extend(be32(16384));
        u.push(b'O');
        u.extend(tuple(&[Some("17"), Some("a")]));
        u.push(b'N');
        u.extend(tuple(&[Some("17"), Some("b")]));
        check(
            &u,
            Ok(Message::Update {
                relation: 16384,
                old: Some((OldKind::Full, vec![Value::Text(b"17"), Value::Text(b"a")])),
                new: vec![Value::Text(b"17"), Value::Text(b"b")],
            }),
        );
        // Without an old image; an unchanged TOAST value.
        let mut u = vec![b'U'];
        u.extend(be32(16384));
        u.push(b'N');
        u.extend(2u16.to_be_bytes());
        u.extend([b't', 0, 0, 0, 1, b'9', b'u']);
        check(
            &u,
            Ok(Message::Update {
                relation: 16384,
                old: None,
                new: vec![Value::Text(b"9"), Value::UnchangedToast],
            }),
        );

        let mut d = vec![b'D'];
        d.extend(be32(16384));
        d.push(b'K');
        d.extend(tuple(&[Some("17"), None]));
        check(
            &d,
            Ok(Message::Delete {
                relation: 16384,
                old: (OldKind::Key, vec![Value::Text(b"17"), Value::Null]),
            }),
        );
        let mut d = vec![b'D'];
        d.extend(be32(16384));
        d.push(b'X');
        check(
            &d,
            Err(DecodeError {
                kind: 'D',
                offset: 6,
                reason: "expected K or O, found 'X'".into(),
            }),
        );
        // A value longer than the message.
        let mut i = vec![b'I'];
        i.extend(be32(1));
        i.push(b'N');
        i.extend(1u16.to_be_bytes());
        i.extend([b't', 0, 0, 1, 0, b'x']);
        check(
            &i,
            Err(DecodeError {
                kind: 'I',
                offset: 13,
                reason: "needs 256 more bytes, 1 left".into(),
            }),
        );
    }

    #[test]
    fn truncate_and_messages() {
        let mut t = vec![b'T'];
        t.extend(be32(2));
        t.push(3);
        t.extend(be32(10));
        t.extend(be32(11));
        check(
            &t,
            Ok(Message::Truncate {
                relations: vec![10, 11],
                cascade: true,
                restart_identity: true,
            }),
        );
        let mut m = vec![b'M', 1];
        m.extend(99u64.to_be_bytes());
        m.extend(b"sealtrail\0");
        m.extend(be32(2));
        m.extend(b"{}");
        check(
            &m,
            Ok(Message::Message {
                transactional: true,
                lsn: 99,
                prefix: "sealtrail",
                content: b"{}",
            }),
        );
        m.push(0);
        check(
            &m,
            Err(DecodeError {
                kind: 'M',
                offset: 26,
                reason: "1 bytes after the message".into(),
            }),
        );
        check(
            b"S",
            Err(DecodeError {
                kind: 'S',
                offset: 1,
                reason: "unknown message kind (streamed or two-phase messages are not asked for)".into(),
            }),
        );
        check(
            b"",
            Err(DecodeError {
                kind: '?',
                offset: 0,
                reason: "empty message".into(),
            }),
        );
    }

    #[test]
    fn lsns() {
        assert_eq!(lsn_text(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16"), None);
        assert_eq!(parse_lsn("x/1"), None);
    }
}
