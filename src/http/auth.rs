//! Keys and tokens: client keys on `/v1/*`, the admin token on `/api/*`. Both are read from
//! `Authorization: Bearer …` (a client key also from `x-api-key`, as Anthropic's clients send
//! it) and compared in constant time. A failed admin authentication is
//! logged with the peer's address (never the token) and answered more slowly the more often
//! that peer failed lately, so guessing the token from one address is slow.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;

use super::AppState;
use crate::error::ApiError;
use crate::secret::constant_time_eq;

fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Checks the client key when keys are configured.
pub fn check_client(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    if state.api_keys.is_empty() {
        return Ok(());
    }
    let token = bearer(req)
        .or_else(|| req.headers().get("x-api-key")?.to_str().ok().map(str::trim))
        .ok_or(ApiError::Unauthorized(
            "missing API key: send Authorization: Bearer <key> or x-api-key: <key>",
        ))?;
    // Compare against every key so the time does not tell which one came close.
    let matched = state.api_keys.iter().fold(false, |ok, k| {
        ok | constant_time_eq(k.expose().as_bytes(), token.as_bytes())
    });
    if matched {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("invalid API key"))
    }
}

/// Checks the admin token, without logging or delay (see [`check_admin_slow`]).
pub fn check_admin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let token = bearer(req).ok_or(ApiError::Unauthorized(
        "missing admin token: send Authorization: Bearer <token>",
    ))?;
    if constant_time_eq(state.admin_token.expose().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("invalid admin token"))
    }
}

/// Checks the admin token; a failure is logged (peer, method, path) and answered after the
/// peer's current delay.
pub async fn check_admin_slow(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let result = check_admin(req, state);
    if let Err(e) = &result {
        let peer = req.peer_addr().map(|a| a.ip());
        let delay = peer.map_or(Duration::ZERO, |ip| {
            state.admin_failures.record(ip, Instant::now())
        });
        log::warn!(
            "admin authentication failed from {} for {} {}: {e} (answered after {} ms)",
            peer.map_or_else(|| "an unknown peer".to_string(), |p| p.to_string()),
            req.method(),
            req.path(),
            delay.as_millis()
        );
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    result
}

/// Failures forgotten after this long without another one from the same peer.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Failures answered at once before delays start (typos happen).
const FREE_FAILURES: u32 = 3;
/// The first delay, doubled with each further failure, up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(5);
/// Most peers remembered; beyond it the stalest half is forgotten, so memory stays bounded
/// whatever the number of addresses failing.
const MAX_PEERS: usize = 10_000;

/// Recent failed admin authentications per peer address.
#[derive(Debug, Default)]
pub struct FailedLogins {
    peers: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailedLogins {
    /// Counts a failure from `peer` and returns how long to wait before answering it.
    pub fn record(&self, peer: IpAddr, now: Instant) -> Duration {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            peers.retain(|_, (_, last)| now.saturating_duration_since(*last) < FORGET_AFTER);
            if peers.len() >= MAX_PEERS {
                let mut times: Vec<Instant> = peers.values().map(|(_, t)| *t).collect();
                times.sort_unstable();
                let cut = times[times.len() / 2];
                peers.retain(|_, (_, last)| *last > cut);
            }
        }
        let entry = peers.entry(peer).or_insert((0, now));
        if now.saturating_duration_since(entry.1) >= FORGET_AFTER {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        delay_for(entry.0)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.peers.lock().map(|p| p.len()).unwrap_or(0)
    }
}

/// The wait before answering the `n`th recent failure of a peer.
fn delay_for(n: u32) -> Duration {
    if n <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (n - FREE_FAILURES - 1).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_per_peer_and_are_capped() {
        let f = FailedLogins::default();
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let delays: Vec<_> = (0..10).map(|_| f.record(a, now)).collect();
        assert_eq!(delays[..3], [Duration::ZERO; 3]);
        assert_eq!(delays[3], FIRST_DELAY);
        assert_eq!(delays[4], FIRST_DELAY * 2);
        assert_eq!(delays[9], MAX_DELAY);
        assert_eq!(f.record(b, now), Duration::ZERO, "another peer is not slowed");
        // Forgotten after a quiet spell.
        assert_eq!(f.record(a, now + FORGET_AFTER), Duration::ZERO);
        assert_eq!(delay_for(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn memory_is_bounded_whatever_the_number_of_peers() {
        let f = FailedLogins::default();
        let now = Instant::now();
        for i in 0..(MAX_PEERS as u32 * 3) {
            let ip = IpAddr::from(i.to_be_bytes());
            f.record(ip, now + Duration::from_millis(u64::from(i)));
        }
        assert!(f.len() <= MAX_PEERS, "{}", f.len());
    }
}
