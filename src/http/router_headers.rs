//! What every client route adds to an answer some provider gave: the `x-switchyard-*`
//! headers, and the request header that excludes providers.

use std::time::{Duration, Instant};

use actix_web::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponseBuilder};

use crate::error::ApiError;
use crate::routing::Served;

impl<A> Served<A> {
    /// The answer, and the headers that say who gave it, for a request that arrived at
    /// `started`.
    pub fn split(self, started: Instant) -> (A, RouterHeaders) {
        let headers = RouterHeaders {
            provider: self.provider,
            attempts: self.attempts,
            started,
            upstream_time: self.upstream_time,
        };
        (self.answer, headers)
    }
}

/// The `x-switchyard-*` response headers.
pub struct RouterHeaders {
    pub provider: HeaderValue,
    pub attempts: u32,
    pub started: Instant,
    pub upstream_time: Duration,
}

const PROVIDER_HEADER: HeaderName = HeaderName::from_static("x-switchyard-provider");
const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-switchyard-attempts");
const OVERHEAD_HEADER: HeaderName = HeaderName::from_static("x-switchyard-overhead-ms");

impl RouterHeaders {
    pub fn apply(self, resp: &mut HttpResponseBuilder, content_type: Option<HeaderValue>) {
        let overhead = self.started.elapsed().saturating_sub(self.upstream_time);
        // `append_header`: the response is new, so there is nothing to replace, and
        // `insert_header` would look for it.
        resp.append_header((PROVIDER_HEADER, self.provider))
            .append_header((ATTEMPTS_HEADER, attempts_header(self.attempts)))
            .append_header((OVERHEAD_HEADER, millis_header(overhead)));
        if let Some(ct) = content_type {
            resp.append_header((CONTENT_TYPE, ct));
        }
    }
}

/// The attempt count: the few usual ones are static values, the rest formatted.
fn attempts_header(n: u32) -> HeaderValue {
    const SMALL: [HeaderValue; 4] = [
        HeaderValue::from_static("0"),
        HeaderValue::from_static("1"),
        HeaderValue::from_static("2"),
        HeaderValue::from_static("3"),
    ];
    match SMALL.get(n as usize) {
        Some(v) => v.clone(),
        None => HeaderValue::from(n),
    }
}

/// A duration as milliseconds with three decimals ("0.046"), written digit by digit into a
/// stack buffer: `fmt` machinery cost more than the rest of the headers together.
fn millis_header(d: Duration) -> HeaderValue {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let (whole, frac) = (micros / 1000, micros % 1000);
    // u64::MAX has 20 digits; then '.', three decimals.
    let mut buf = [0u8; 24];
    let mut at = buf.len();
    for i in 0..3 {
        at -= 1;
        buf[at] = b'0' + (frac / 10u64.pow(i) % 10) as u8;
    }
    at -= 1;
    buf[at] = b'.';
    let mut rest = whole;
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&buf[at..]).unwrap_or(HeaderValue::from_static("0"))
}

/// An upstream status as actix's type (a nonsense one as 502).
pub fn status_code(status: u16) -> actix_web::http::StatusCode {
    actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY)
}

/// `x-switchyard-exclude-providers: 3,7`.
pub fn excluded_ids(req: &HttpRequest) -> Result<Vec<i64>, ApiError> {
    const EXCLUDE_HEADER: HeaderName = HeaderName::from_static("x-switchyard-exclude-providers");
    let Some(v) = req.headers().get(EXCLUDE_HEADER) else {
        return Ok(Vec::new());
    };
    let text = v
        .to_str()
        .map_err(|_| ApiError::bad_request("x-switchyard-exclude-providers must be ASCII"))?;
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "x-switchyard-exclude-providers: {s:?} is not a provider id"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_is_milliseconds_with_three_decimals() {
        assert_eq!(millis_header(Duration::from_micros(46)), "0.046");
        assert_eq!(millis_header(Duration::from_micros(12_345_678)), "12345.678");
        assert_eq!(millis_header(Duration::ZERO), "0.000");
        let max = u64::MAX;
        assert_eq!(
            millis_header(Duration::MAX),
            format!("{}.{:03}", max / 1000, max % 1000).as_str()
        );
        for n in [0, 1, 3, 4, 17, u32::MAX] {
            assert_eq!(attempts_header(n), n.to_string().as_str());
        }
    }
}
