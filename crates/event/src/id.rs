//! Event ids: ULIDs made from the time the server received the event and
//! randomness the caller supplies, so this crate reads no clock and no
//! random source (the server owns both, and tests can fix them).
//!
//! Not here: monotonic ordering of ids made in the same millisecond; the
//! log's order is the entry index, not the id.

use jiff::Timestamp;
use thiserror::Error;
use ulid::Ulid;

/// A time a ULID cannot carry: its time part is unsigned milliseconds since
/// the Unix epoch in 48 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{0} cannot be a ULID's time: it must lie between 1970 and the year 10889")]
pub struct IdTimeError(pub Timestamp);

/// The ULID for an event received at `received_at`, with 80 bits of
/// caller-supplied randomness.
pub fn event_id(received_at: Timestamp, random: [u8; 10]) -> Result<Ulid, IdTimeError> {
    let ms = u64::try_from(received_at.as_millisecond()).map_err(|_| IdTimeError(received_at))?;
    if ms >= 1 << Ulid::TIME_BITS {
        return Err(IdTimeError(received_at));
    }
    let mut wide = [0u8; 16];
    wide[6..].copy_from_slice(&random);
    Ok(Ulid::from_parts(ms, u128::from_be_bytes(wide)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn time_and_randomness_land_in_their_bits() {
        let t: Timestamp = "2024-05-01T12:30:00.123Z".parse().unwrap();
        let id = event_id(t, [0xff; 10]).unwrap();
        assert_eq!(id.timestamp_ms(), 1_714_566_600_123);
        assert_eq!(id.random(), (1u128 << 80) - 1);
        assert_eq!(id.to_string().len(), 26);
        let zero = event_id(Timestamp::UNIX_EPOCH, [0; 10]).unwrap();
        assert_eq!(zero.to_string(), "00000000000000000000000000");
        assert!(event_id("1969-12-31T23:59:59Z".parse().unwrap(), [0; 10]).is_err());
    }
}
