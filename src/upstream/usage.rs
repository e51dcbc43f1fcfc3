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
/// `null`, a duplicate), which serde then judges.
fn plain_counts(value: &[u8]) -> Option<TokenUsage> {
    let mut scan = json_members::Scan::new(value)?;
    let mut usage = TokenUsage::default();
    let mut seen = [false; 3];
    for m in scan.by_ref() {
        let slot = match &value[m.key.0..m.key.1] {
            b"prompt_tokens" => 0,
            b"completion_tokens" => 1,
            b"total_tokens" => 2,
            // Other members (`prompt_tokens_details`, …) are not read; a key written with
            // escapes (it may spell one of the three) leaves the object to serde.
            _ => continue,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
        let digits = &value[m.value.0..m.value.1];
        let leading_zero = digits.len() > 1 && digits[0] == b'0';
        if digits.is_empty() || digits.len() > 20 || leading_zero || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        // At most 20 ASCII digits (checked above); a count past u64 is not plain.
        let n = digits
            .iter()
            .try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))?;
        match slot {
            0 => usage.prompt_tokens = n,
            1 => usage.completion_tokens = n,
            _ => usage.total_tokens = n,
        }
    }
    (scan.complete() && !scan.escaped_key).then_some(usage)
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
            // serde reads a struct from an array too; so did the old full parse.
            (r#"{"usage":[1]}"#, Some((1, 0, 1))),
        ] {
            let got =
                from_json(doc.as_bytes()).map(|u| (u.prompt_tokens, u.completion_tokens, u.total_tokens));
            assert_eq!(got, want, "{doc}");
        }
    }
}
