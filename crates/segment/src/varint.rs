//! LEB128 unsigned integers: seven bits a byte, least significant first,
//! the high bit set on every byte but the last.

pub(crate) fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The integer at `bytes[*at..]`, advancing `at`; `None` past the end or
/// for more than ten bytes.
#[inline]
pub(crate) fn get(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_refusals() {
        let values = [0, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX), u64::MAX];
        let mut bytes = Vec::new();
        for v in values {
            super::put(&mut bytes, v);
        }
        let mut at = 0;
        for v in values {
            assert_eq!(super::get(&bytes, &mut at), Some(v));
        }
        assert_eq!(at, bytes.len());
        assert_eq!(super::get(&bytes, &mut at), None, "past the end");
        assert_eq!(super::get(&[0x80; 11], &mut 0), None, "eleven bytes");
        assert_eq!(super::get(&[0x80, 0x80], &mut 0), None, "cut short");
    }
}
