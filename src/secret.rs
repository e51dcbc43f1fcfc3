//! Secrets (provider keys, tokens) that must never reach a log line or a response in full.

use std::fmt;

/// A secret string. `Debug` and `Display` print the masked form; the raw value is only
/// reachable through [`Secret::expose`], which is called where the key goes on the wire.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for the Authorization header and the database only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `sk-…abcd`: the first three and last four characters of keys long enough to keep
    /// most of it hidden, `…` for short ones, empty for none.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        match chars.len() {
            0 => String::new(),
            n if n >= 12 => {
                let head: String = chars[..3].iter().collect();
                let tail: String = chars[n - 4..].iter().collect();
                format!("{head}…{tail}")
            }
            _ => "…".to_string(),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.masked())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Compares two byte strings in time that depends only on their lengths, so a token check
/// does not reveal how many leading bytes matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// A random token of `bytes` random bytes, hex encoded (for the generated admin token).
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS random source failing is not something the process can work around.
    if getrandom::fill(&mut buf).is_err() {
        panic!("the operating system's random number source is unavailable");
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_masked() {
        assert_eq!(Secret::new("sk-1234567890abcd").masked(), "sk-…abcd");
        assert_eq!(Secret::new("short").masked(), "…");
        assert_eq!(Secret::new("").masked(), "");
        assert!(!format!("{:?}", Secret::new("sk-1234567890abcd")).contains("567890"));
    }

    #[test]
    fn comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert_eq!(random_token(16).len(), 32);
    }
}
