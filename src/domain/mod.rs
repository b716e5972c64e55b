//! Types and rules with no I/O: states, validated names and ids, list queries.

pub mod dump;
pub mod field;
pub mod kind;
pub mod list;
pub mod query;
pub mod schedule;
pub mod state;
pub mod transition;
pub mod vias;

pub use field::FieldError;
pub use kind::DeployType;
pub use list::{ListBatchTasksParams, NameField, NameLike, Paging, SortField, SortOrder};
pub use state::TaskState;

/// Milliseconds since the Unix epoch, the contract's time unit.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The operating system's random generator failed.
#[derive(Debug, thiserror::Error)]
#[error("random generator failed: {0}")]
pub struct RandomError(getrandom::Error);

/// Random bytes as lowercase hex (ids are 16 bytes → 32 hex characters).
pub fn random_hex(bytes: usize) -> Result<String, RandomError> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).map_err(RandomError)?;
    Ok(hex(&buf))
}

/// `n` new ids of 32 lowercase hex characters, in ascending order: the
/// creation time (48 bits of epoch milliseconds), 48 random bits drawn once
/// for the call, then the id's place in the call (32 bits). A batch's
/// thousands of tasks then land side by side in the index on ids instead
/// of one on each of its pages: on PostgreSQL a unique text index took
/// 0.65-0.73 s for 100,000 random ids and 0.38-0.39 s for ordered ones.
/// Ids stay unique (the random part tells calls of the same millisecond
/// apart, and the database's unique key checks it) but are not secrets:
/// they name resources, whose access the project's credentials guard.
pub fn ordered_ids(n: usize) -> Result<Vec<String>, RandomError> {
    let mut nonce = [0u8; 6];
    random_bytes(&mut nonce)?;
    let at = now_millis().to_be_bytes();
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&at[2..]);
    id[6..12].copy_from_slice(&nonce);
    Ok((0..n)
        .map(|i| {
            // A batch holds at most 100 groups of 1,000 sources.
            id[12..].copy_from_slice(&(i as u32).to_be_bytes());
            hex(&id)
        })
        .collect())
}

/// Fills `buf` from the operating system's random generator.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::getrandom(buf).map_err(RandomError)
}

/// `len` characters drawn uniformly from `alphabet` (at most 256 of them):
/// bytes that would bias the draw are thrown away and drawn again.
pub fn random_string(len: usize, alphabet: &[u8]) -> Result<String, RandomError> {
    let n = alphabet.len().clamp(1, 256);
    let limit = 256 - 256 % n;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        random_bytes(&mut buf)?;
        for b in buf {
            if out.len() < len && usize::from(b) < limit {
                if let Some(c) = alphabet.get(usize::from(b) % n) {
                    out.push(char::from(*c));
                }
            }
        }
    }
    Ok(out)
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// A service's algorithm id as VIAS shows it (`alg_id`, `algorithm_publish_id`):
/// a UUID of version 4 form derived from the service id, so it is stable
/// and needs no column of its own.
pub fn alg_id_of(service_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(service_id.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// RFC 3339 UTC timestamp with milliseconds, for token bodies.
pub fn rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}000Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formatting() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_millis(1_685_667_905_165),
            "2023-06-02T01:05:05.165000Z"
        );
        assert_eq!(
            rfc3339_millis(951_782_400_000),
            "2000-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn alg_ids_are_version_4_uuids() {
        let a = alg_id_of("0123456789abcdef0123456789abcdef");
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert_eq!(a, alg_id_of("0123456789abcdef0123456789abcdef"), "stable");
        assert_ne!(a, alg_id_of("other"));
    }

    #[test]
    fn random_ids_are_hex() {
        let a = random_hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, random_hex(16).unwrap());
    }

    #[test]
    fn ordered_ids_are_hex_ascending_and_distinct_across_calls() {
        let a = ordered_ids(70_000).unwrap();
        let b = ordered_ids(3).unwrap();
        assert_eq!(a.len(), 70_000);
        for id in a.iter().chain(&b) {
            assert_eq!(id.len(), 32);
            assert!(id
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
        assert!(a.windows(2).all(|w| w[0] < w[1]), "ascending");
        // Two calls in the same millisecond differ in their random part.
        assert!(b.iter().all(|id| !a.contains(id)));
        assert_eq!(ordered_ids(0).unwrap(), Vec::<String>::new());
    }
}
