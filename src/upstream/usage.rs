//! Token usage as upstreams report it (`usage` in a completion, or in the last chunk of a
//! stream when `stream_options.include_usage` was asked for).

use serde::Deserialize;

use super::json_members;

/// The most tokens one request may report per field: a billion is far beyond any model's
/// context and leaves a day's sums of a busy fleet far from `i64::MAX`. An upstream that says
/// more is clamped here, so one absurd answer can never make the usage write fail.
pub const MAX_TOKENS: u64 = 1_000_000_000;

/// OpenAI's `usage` object; missing fields count as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct TokenUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<TokenUsage>,
}

/// The `usage` of a JSON document, if it has one. Only that member is parsed: the rest is
/// skipped by the member scanner, walking back from the end (this runs on every answer, and
/// `usage` comes last). A document the scanner cannot walk, or whose keys it may have
/// misread (escapes), gets the full parse. The last `usage` member counts, as JSON.parse
/// keeps it; a document broken elsewhere still yields a well-formed `usage`.
pub fn from_json(doc: &[u8]) -> Option<TokenUsage> {
    // Walking back from the end reads only what follows `usage` (usually nothing); what that
    // walk cannot read is walked forward, and what neither can is parsed whole.
    let found = match json_members::find_last(doc, b"usage") {
        Some(found) => Some((found, false)),
        None => json_members::find(doc, b"usage"),
    };
    let value = match found {
        Some((Some(value), _)) => match plain_counts(value) {
            Some(usage) => Some(usage),
            None => serde_json::from_slice::<Option<TokenUsage>>(value).ok()?,
        },
        Some((None, false)) => None,
        _ => serde_json::from_slice::<WithUsage>(doc).ok()?.usage,
    };
    value.map(TokenUsage::clamped)
}

/// The counts of a usage object whose members are plain integers (what every upstream
/// sends), read without serde; `None` for anything else (a float, a string, an escaped key,
/// `null`, a duplicate, a malformed object), which serde then judges.
///
/// One forward pass: the three keys are matched in place and their digits read as they are
/// walked (the generic member scanner searched for each key's end and walked each number
/// twice: this runs on every answer and every stream).
fn plain_counts(value: &[u8]) -> Option<TokenUsage> {
    use json_members::{skip_value, skip_ws, string_end};
    const KEYS: [&[u8]; 3] = [b"prompt_tokens\"", b"completion_tokens\"", b"total_tokens\""];
    let mut counts = [None::<u64>; 3];
    let mut i = skip_ws(value, 0);
    if value.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(value, i + 1);
    if value.get(i) == Some(&b'}') {
        return (skip_ws(value, i + 1) == value.len()).then(TokenUsage::default);
    }
    loop {
        if value.get(i) != Some(&b'"') {
            return None;
        }
        let key = &value[i + 1..];
        let slot = KEYS.iter().position(|k| key.starts_with(k));
        i = match slot {
            Some(s) => i + 1 + KEYS[s].len(),
            // Other members (`prompt_tokens_details`, …) are skipped; a key written with
            // escapes (it may spell one of the three) leaves the object to serde.
            None => match string_end(value, i)? {
                (_, true) => return None,
                (end, false) => end,
            },
        };
        i = skip_ws(value, i);
        if value.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(value, i + 1);
        match slot {
            Some(s) => {
                let digits = value[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                let leading_zero = digits > 1 && value[i] == b'0';
                if digits == 0 || digits > 20 || leading_zero || counts[s].is_some() {
                    return None;
                }
                // At most 20 ASCII digits (checked above); a count past u64 is not plain.
                let n = value[i..i + digits]
                    .iter()
                    .try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))?;
                counts[s] = Some(n);
                i += digits;
            }
            None => i = skip_value(value, i)?,
        }
        i = skip_ws(value, i);
        match value.get(i) {
            Some(b',') => i = skip_ws(value, i + 1),
            Some(b'}') if skip_ws(value, i + 1) == value.len() => break,
            _ => return None,
        }
    }
    let [prompt, completion, total] = counts.map(|c| c.unwrap_or(0));
    Some(TokenUsage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: total,
    })
}

impl TokenUsage {
    /// Every field at most [`MAX_TOKENS`]; a missing total is the sum of the others.
    pub fn clamped(self) -> Self {
        let prompt_tokens = self.prompt_tokens.min(MAX_TOKENS);
        let completion_tokens = self.completion_tokens.min(MAX_TOKENS);
        let total_tokens = if self.total_tokens == 0 {
            prompt_tokens + completion_tokens
        } else {
            self.total_tokens
        };
        TokenUsage {
            prompt_tokens,
            completion_tokens,
            total_tokens: total_tokens.min(MAX_TOKENS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_counts_are_clamped() {
        let u =
            from_json(br#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":5}}"#).unwrap();
        assert_eq!(u.prompt_tokens, MAX_TOKENS);
        assert_eq!(u.completion_tokens, 5);
        assert_eq!(u.total_tokens, MAX_TOKENS);
        let u = from_json(br#"{"usage":{"prompt_tokens":3,"completion_tokens":4}}"#).unwrap();
        assert_eq!(u.total_tokens, 7);
        // A count that does not fit u64 is not a usage block at all.
        assert_eq!(from_json(br#"{"usage":{"prompt_tokens":1e30}}"#), None);
        // Only the top-level member counts; an escaped key is still read.
        let nested = br#"{"choices":[{"usage":{"total_tokens":9}}],"usage":{"total_tokens":4}}"#;
        assert_eq!(from_json(nested).unwrap().total_tokens, 4);
        assert_eq!(from_json(br#"{"choices":[{"usage":{"total_tokens":9}}]}"#), None);
        assert_eq!(
            from_json(br#"{"us\u0061ge":{"total_tokens":5}}"#)
                .unwrap()
                .total_tokens,
            5
        );
        assert_eq!(from_json(br#"{"usage":null}"#), None);
        assert_eq!(from_json(b"not json"), None);
        // The plain reading and serde agree, and serde judges what is not plain.
        for (doc, want) in [
            (
                r#"{"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
                Some((1, 2, 3)),
            ),
            (
                r#"{"usage":{"total_tokens":3,"prompt_tokens_details":{"cached_tokens":1}}}"#,
                Some((0, 0, 3)),
            ),
            (r#"{"usage":{"prompt_tokens":1.0}}"#, None),
            (r#"{"usage":{"prompt_tokens":"1"}}"#, None),
            (r#"{"usage":{"prompt_tokens":-1}}"#, None),
            (r#"{"usage":{"prompt_tokens":1,"prompt_tokens":2}}"#, None),
            (r#"{"usage":{"prompt_tokens":99999999999999999999999}}"#, None),
            (r#"{"usage":{}}"#, Some((0, 0, 0))),
            (r#"{"usage":{"total_t\u006fkens":5}}"#, Some((0, 0, 5))),
            (r#"{"usage":{"prompt_tokens":18446744073709551616}}"#, None),
            (r#"{"usage":{"prompt_tokens":07}}"#, None),
            (
                r#"{"usage":{ "prompt_tokens" : 2 , "completion_tokens_details":{"reasoning_tokens":1}, "completion_tokens":3 }}"#,
                Some((2, 3, 5)),
            ),
            (r#"{"usage":{"prompt_tokens":2,}}"#, None),
            (r#"{"usage":{"prompt_tokens":2 "total_tokens":3}}"#, None),
            (
                r#"{"usage":{"prompt_tokens":2,"prompt_tokens_x":9}}"#,
                Some((2, 0, 2)),
            ),
            (r#"{"usage":{"x\"y":1,"total_tokens":4}}"#, Some((0, 0, 4))),
            // serde reads a struct from an array too; so did the old full parse.
            (r#"{"usage":[1]}"#, Some((1, 0, 1))),
        ] {
            let got =
                from_json(doc.as_bytes()).map(|u| (u.prompt_tokens, u.completion_tokens, u.total_tokens));
            assert_eq!(got, want, "{doc}");
        }
    }
}
