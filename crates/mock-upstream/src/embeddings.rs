//! `POST /v1/embeddings`: OpenAI's embeddings, with deterministic vectors.
//!
//! Each vector is derived from its input text alone (a hash spread over the dimensions and
//! normalised to length 1), so equal inputs get equal vectors on every mock and tests can
//! compare them. `encoding_format: "base64"` (what the official `openai` Python SDK asks for)
//! answers little-endian `f32`s in base64.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::{
    behavior::{Endpoint, Format},
    server::{Shared, openai_error},
};

/// Most inputs in one request (OpenAI's limit).
const MAX_INPUTS: usize = 2048;
/// Largest `dimensions`.
const MAX_DIMS: usize = 4096;
/// Most numbers in one answer, so a hostile request cannot ask for gigabytes.
const MAX_FLOATS: usize = 1 << 20;

/// `POST /v1/embeddings` and `POST /embeddings`.
pub(crate) async fn embeddings(req: HttpRequest, body: web::Bytes, state: web::Data<Shared>) -> HttpResponse {
    let begun = match state
        .begin(Endpoint::Embeddings, Format::OpenAi, &req, &body)
        .await
    {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let b = &begun.c.behavior;
    let answer = inputs(&begun.json).and_then(|inputs| {
        let dims = match begun.json.get("dimensions") {
            None => b.embedding_dims.clamp(1, MAX_DIMS),
            Some(d) => d
                .as_u64()
                .and_then(|d| usize::try_from(d).ok())
                .filter(|d| (1..=MAX_DIMS).contains(d))
                .ok_or(format!("dimensions must be an integer in 1..={MAX_DIMS}"))?,
        };
        if inputs.len().saturating_mul(dims) > MAX_FLOATS {
            return Err(format!("mock: at most {MAX_FLOATS} numbers per answer"));
        }
        let base64 = match begun.json.get("encoding_format").and_then(Value::as_str) {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => return Err(format!("encoding_format {other:?} is not supported")),
        };
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let v = vector(text, dims);
                let embedding = if base64 { json!(to_base64(&v)) } else { json!(v) };
                json!({"object": "embedding", "index": i, "embedding": embedding})
            })
            .collect();
        let p = b.prompt_tokens;
        Ok(json!({
            "object": "list",
            "data": data,
            "model": begun.model,
            "usage": {"prompt_tokens": p, "total_tokens": p},
        }))
    });
    match answer {
        Ok(v) => state.answer_json(&begun, Bytes::from(v.to_string())).await,
        Err(msg) => {
            let body = openai_error(&msg, "invalid_request_error", "invalid_request");
            state.answer_error(&begun, StatusCode::BAD_REQUEST, body).await
        }
    }
}

/// The inputs as texts: a string, an array of strings, a token array (one input) or an array
/// of token arrays. Anything else, empty or too many is refused as OpenAI does.
fn inputs(body: &Value) -> Result<Vec<String>, String> {
    let invalid = || "'$.input' is invalid: a non-empty string or array is required".to_owned();
    let list = match body.get("input") {
        Some(Value::String(s)) if !s.is_empty() => return Ok(vec![s.clone()]),
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => return Err(invalid()),
    };
    if list.iter().all(Value::is_number) {
        return Ok(vec![Value::Array(list.clone()).to_string()]);
    }
    if list.len() > MAX_INPUTS {
        return Err(format!("'$.input' has more than {MAX_INPUTS} items"));
    }
    list.iter()
        .map(|item| match item {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_number) => Ok(item.to_string()),
            _ => Err(invalid()),
        })
        .collect()
}

/// A unit vector of `dims` numbers derived from `text` (FNV-1a seed, splitmix64 spread).
pub(crate) fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        seed = (seed ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut v: Vec<f32> = (0..dims as u64)
        .map(|i| {
            let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // 24 random bits mapped to [-1, 1).
            ((z >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Standard base64 (with padding) of the little-endian bytes of `v`.
fn to_base64(v: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_vectors() {
        let a = vector("hello", 16);
        assert_eq!(a, vector("hello", 16));
        assert_ne!(a, vector("world", 16));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }

    #[test]
    fn base64_matches_known_values() {
        // 1.0f32 is 00 00 80 3f.
        assert_eq!(to_base64(&[1.0]), "AACAPw==");
        assert_eq!(to_base64(&[1.0, 1.0, 1.0]), "AACAPwAAgD8AAIA/");
    }

    #[test]
    fn input_shapes() {
        assert_eq!(inputs(&json!({"input": "a"})).expect("ok").len(), 1);
        assert_eq!(inputs(&json!({"input": ["a", "b"]})).expect("ok").len(), 2);
        assert_eq!(inputs(&json!({"input": [1, 2, 3]})).expect("ok").len(), 1);
        assert_eq!(inputs(&json!({"input": [[1], [2]]})).expect("ok").len(), 2);
        assert!(inputs(&json!({"input": ""})).is_err());
        assert!(inputs(&json!({"input": []})).is_err());
        assert!(inputs(&json!({"input": [{}]})).is_err());
        assert!(inputs(&json!({})).is_err());
        let many: Vec<String> = (0..MAX_INPUTS + 1).map(|i| i.to_string()).collect();
        assert!(inputs(&json!({"input": many})).is_err());
    }
}
