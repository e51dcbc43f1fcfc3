//! Provider keys sealed at rest.
//!
//! With a secret key set (`SWITCHYARD_SECRET_KEY` or `secret_key_file`), every provider key
//! written to the database is sealed with ChaCha20-Poly1305 (ring's AEAD, already in the build
//! through rustls) and opened again when read. The provider's name is the associated data: a
//! sealed value copied into another provider's row does not open. A sealed value reads
//! `sealed:v1:<key id>:<nonce>:<ciphertext and tag>` (hex), so it is told apart from a
//! plaintext key at a glance, and the key id (a digest of the key, not the key) says which
//! key sealed it.
//!
//! [`ProviderKeys`] is what the rest of the router uses: the optional sealing key plus the
//! rule of which environment variables `api_key_env` may name.

use std::collections::HashSet;
use std::fmt;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::secret::Secret;
use crate::store::{DbPool, StoreError};

/// What every sealed value starts with.
pub const SEALED_PREFIX: &str = "sealed:v1:";

/// Why a key could not be loaded, sealed or opened. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the secret key must be 64 hexadecimal characters (32 bytes), e.g. from `openssl rand -hex 32`")]
    BadKey,
    #[error("cannot read the secret key file {path}: {message}")]
    KeyFile { path: String, message: String },
    #[error(
        "the database holds sealed provider keys but no secret key is set: set SWITCHYARD_SECRET_KEY \
         or SWITCHYARD_SECRET_KEY_FILE (or secret_key_file) to the key they were sealed with"
    )]
    NoKey,
    #[error("a provider key was sealed with key {found}, but the secret key set is {expected}")]
    WrongKey { found: String, expected: String },
    #[error("a sealed provider key is malformed or was altered")]
    Corrupt,
    #[error("sealing failed")]
    Seal,
}

/// A 256-bit sealing key. `Debug` shows only its id.
pub struct SealingKey {
    key: LessSafeKey,
    id: String,
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingKey(id {})", self.id)
    }
}

impl SealingKey {
    /// A key from 64 hex characters (surrounding whitespace ignored, as in a key file).
    pub fn from_hex(text: &str) -> Result<SealingKey, SealError> {
        let bytes = decode_hex(text.trim()).ok_or(SealError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey);
        }
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| SealError::BadKey)?;
        // The id names the key in sealed values and messages without revealing it: the first
        // 8 bytes of a domain-separated SHA-256 digest.
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"switchyard sealing key id\0");
        ctx.update(&bytes);
        let id = encode_hex(&ctx.finish().as_ref()[..8]);
        Ok(SealingKey {
            key: LessSafeKey::new(unbound),
            id,
        })
    }

    /// Reads a key file (64 hex characters).
    pub fn from_file(path: &str) -> Result<SealingKey, SealError> {
        let text = std::fs::read_to_string(path).map_err(|e| SealError::KeyFile {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        SealingKey::from_hex(&text)
    }

    /// The key's public id (16 hex characters).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext` for the provider named `provider`.
    pub fn seal(&self, provider: &str, plaintext: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        // Random 96-bit nonces: a key seals a few thousand values in its life, far from the
        // birthday bound.
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Seal)?;
        let mut data = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), aad(provider), &mut data)
            .map_err(|_| SealError::Seal)?;
        Ok(format!(
            "{SEALED_PREFIX}{}:{}:{}",
            self.id,
            encode_hex(&nonce),
            encode_hex(&data)
        ))
    }

    /// Opens a value sealed for `provider`.
    pub fn open(&self, provider: &str, sealed: &str) -> Result<Secret, SealError> {
        let (id, nonce, mut data) = parse_sealed(sealed)?;
        if id != self.id {
            return Err(SealError::WrongKey {
                found: id.to_string(),
                expected: self.id.clone(),
            });
        }
        let plain = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), aad(provider), &mut data)
            .map_err(|_| SealError::Corrupt)?;
        String::from_utf8(plain.to_vec())
            .map(Secret::new)
            .map_err(|_| SealError::Corrupt)
    }
}

fn aad(provider: &str) -> Aad<Vec<u8>> {
    let mut a = b"switchyard provider api_key\0".to_vec();
    a.extend_from_slice(provider.as_bytes());
    Aad::from(a)
}

/// True when a stored value is sealed (rather than a plaintext key).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

/// The key id that sealed a stored value, if it is sealed and well-formed.
pub fn sealed_key_id(stored: &str) -> Option<&str> {
    parse_sealed(stored).ok().map(|(id, _, _)| id)
}

fn parse_sealed(sealed: &str) -> Result<(&str, [u8; NONCE_LEN], Vec<u8>), SealError> {
    let rest = sealed.strip_prefix(SEALED_PREFIX).ok_or(SealError::Corrupt)?;
    let mut parts = rest.split(':');
    let (Some(id), Some(nonce), Some(data), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SealError::Corrupt);
    };
    let nonce: [u8; NONCE_LEN] = decode_hex(nonce)
        .and_then(|n| n.try_into().ok())
        .ok_or(SealError::Corrupt)?;
    let data = decode_hex(data).ok_or(SealError::Corrupt)?;
    if id.len() != 16 || data.len() < CHACHA20_POLY1305.tag_len() {
        return Err(SealError::Corrupt);
    }
    Ok((id, nonce, data))
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

/// Provider keys as the router stores and finds them: sealed with the secret key when one is
/// set, and read from the environment only through names the operator allowed.
#[derive(Debug, Default)]
pub struct ProviderKeys {
    sealing: Option<SealingKey>,
    /// `api_key_env` names given through the admin API must start with this.
    env_prefix: String,
    /// `api_key_env` names the config file uses: the operator wrote them, so any is allowed.
    file_env: HashSet<String>,
}

impl ProviderKeys {
    pub fn new(sealing: Option<SealingKey>, env_prefix: &str, file_env: HashSet<String>) -> Self {
        ProviderKeys {
            sealing,
            env_prefix: env_prefix.to_string(),
            file_env,
        }
    }

    /// From the configuration: the secret key (value or file) and the `api_key_env` rule.
    pub fn from_config(config: &crate::config::Config) -> Result<ProviderKeys, SealError> {
        let sealing = match (&config.secret_key, &config.secret_key_file) {
            (Some(hex), _) => Some(SealingKey::from_hex(hex)?),
            (None, Some(path)) => Some(SealingKey::from_file(path)?),
            (None, None) => None,
        };
        let file_env = config
            .providers
            .iter()
            .filter_map(|p| p.api_key_env.clone())
            .collect();
        Ok(ProviderKeys::new(sealing, &config.api_key_env_prefix, file_env))
    }

    pub fn sealing(&self) -> Option<&SealingKey> {
        self.sealing.as_ref()
    }

    /// Whether `api_key_env` may name `var`: the configured prefix, or a name the config file
    /// itself uses. Anything else could hand the database URL or cloud credentials of the
    /// process to a `base_url` of an admin caller's choice.
    pub fn env_allowed(&self, var: &str) -> bool {
        (!self.env_prefix.is_empty() && var.starts_with(&self.env_prefix)) || self.file_env.contains(var)
    }

    /// Why `var` is refused, for the `api_key_env` field error.
    pub fn env_refusal(&self, var: &str) -> String {
        format!(
            "{var} may not be read through the admin API: name a variable starting with {} \
             (api_key_env_prefix), or name this one in the config file",
            self.env_prefix
        )
    }

    /// The value to store for a plaintext key: sealed when a key is set, else as is.
    pub fn store(&self, provider: &str, plaintext: &str) -> Result<String, SealError> {
        match &self.sealing {
            Some(k) if !plaintext.is_empty() => k.seal(provider, plaintext),
            _ => Ok(plaintext.to_string()),
        }
    }

    /// The plaintext key of a stored value.
    pub fn open(&self, provider: &str, stored: &str) -> Result<Secret, SealError> {
        if !is_sealed(stored) {
            return Ok(Secret::new(stored));
        }
        self.sealing
            .as_ref()
            .ok_or(SealError::NoKey)?
            .open(provider, stored)
    }
}

/// At start, before any provider is loaded: refuses a database whose sealed keys this
/// process cannot open (no key, or another key), and seals the plaintext keys when a key is
/// set. Returns how many rows were sealed.
pub fn prepare_stored_keys(pool: &DbPool, keys: &ProviderKeys) -> Result<usize, StoreError> {
    let refuse = |e: SealError| StoreError::Failed(e.to_string());
    let stored = pool.stored_keys()?;
    for (_, _, value) in &stored {
        if !is_sealed(value) {
            continue;
        }
        let Some(key) = keys.sealing() else {
            return Err(refuse(SealError::NoKey));
        };
        match sealed_key_id(value) {
            Some(id) if id == key.id() => {}
            Some(id) => {
                return Err(refuse(SealError::WrongKey {
                    found: id.to_string(),
                    expected: key.id().to_string(),
                }));
            }
            None => return Err(refuse(SealError::Corrupt)),
        }
    }
    let Some(key) = keys.sealing() else {
        return Ok(0);
    };
    pool.rewrite_keys(&|name, value| {
        if value.is_empty() || is_sealed(value) {
            return Ok(None);
        }
        key.seal(name, value).map(Some).map_err(refuse)
    })
}

/// Re-seals every stored key under `new`: sealed ones are opened with `current` first,
/// plaintext ones are sealed. One transaction: on any error nothing changes.
pub fn reseal_all(pool: &DbPool, current: &ProviderKeys, new: &SealingKey) -> Result<usize, StoreError> {
    let fail = |e: SealError| StoreError::Failed(e.to_string());
    pool.rewrite_keys(&|name, value| {
        if value.is_empty() {
            return Ok(None);
        }
        let plain = current.open(name, value).map_err(fail)?;
        new.seal(name, plain.expose()).map(Some).map_err(fail)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key() -> SealingKey {
        SealingKey::from_hex(HEX).unwrap()
    }

    #[test]
    fn seal_and_open_round_trip_and_hide_the_key() {
        let k = key();
        let sealed = k.seal("primary", "sk-live-1234567890").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("1234567890"));
        assert_eq!(sealed_key_id(&sealed), Some(k.id()));
        assert_eq!(k.open("primary", &sealed).unwrap().expose(), "sk-live-1234567890");
        // Two seals of one key differ (fresh nonces).
        assert_ne!(sealed, k.seal("primary", "sk-live-1234567890").unwrap());
    }

    #[test]
    fn a_sealed_value_is_bound_to_its_provider_and_key() {
        let k = key();
        let sealed = k.seal("primary", "sk-x").unwrap();
        assert_eq!(k.open("other", &sealed), Err(SealError::Corrupt));
        let other = SealingKey::from_hex(&HEX.replace("00", "ff")).unwrap();
        assert!(matches!(
            other.open("primary", &sealed),
            Err(SealError::WrongKey { .. })
        ));
        let mut tampered = sealed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        assert_eq!(k.open("primary", &tampered), Err(SealError::Corrupt));
    }

    #[test]
    fn absurd_input_is_refused_not_panicked_on() {
        for bad in ["", "zz", "abc", &HEX[..62], &format!("{HEX}00"), "é"] {
            assert!(SealingKey::from_hex(bad).is_err(), "{bad:?}");
        }
        let k = key();
        for bad in [
            "sealed:v1:",
            "sealed:v1:x:y:z",
            "sealed:v1:0011223344556677:00:00",
            "sealed:v1:0011223344556677:000000000000000000000000:00",
            "sealed:v1:a:b:c:d",
            "sealed:v1:0011223344556677:00000000000000000000000é:00",
        ] {
            assert!(k.open("p", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_key_material() {
        let k = key();
        let shown = format!("{k:?} {:?}", ProviderKeys::new(Some(key()), "P_", HashSet::new()));
        assert!(!shown.contains("0102030405"), "{shown}");
        assert!(shown.contains(k.id()));
    }

    #[test]
    fn without_a_key_plaintext_passes_and_sealed_values_are_refused() {
        let none = ProviderKeys::default();
        assert_eq!(none.store("p", "sk-a").unwrap(), "sk-a");
        assert_eq!(none.open("p", "sk-a").unwrap().expose(), "sk-a");
        let sealed = key().seal("p", "sk-a").unwrap();
        assert_eq!(none.open("p", &sealed), Err(SealError::NoKey));
        let with = ProviderKeys::new(Some(key()), "SWITCHYARD_KEY_", HashSet::new());
        assert!(is_sealed(&with.store("p", "sk-a").unwrap()));
        assert_eq!(with.store("p", "").unwrap(), "", "no key stays empty");
    }

    #[test]
    fn environment_names_follow_the_prefix_or_the_file() {
        let keys = ProviderKeys::new(
            None,
            "SWITCHYARD_KEY_",
            HashSet::from(["PRIMARY_KEY".to_string()]),
        );
        assert!(keys.env_allowed("SWITCHYARD_KEY_OPENAI"));
        assert!(keys.env_allowed("PRIMARY_KEY"));
        assert!(!keys.env_allowed("DATABASE_URL"));
        assert!(!keys.env_allowed("AWS_SECRET_ACCESS_KEY"));
    }
}
