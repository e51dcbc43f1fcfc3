//! Token usage as upstreams report it (`usage` in a completion, or in the last chunk of a
//! stream when `stream_options.include_usage` was asked for).

use serde::Deserialize;

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

/// The `usage` of a JSON document, if it has one. Other fields are skipped, not built.
pub fn from_json(doc: &[u8]) -> Option<TokenUsage> {
    serde_json::from_slice::<WithUsage>(doc).ok()?.usage.map(|mut u| {
        if u.total_tokens == 0 {
            u.total_tokens = u.prompt_tokens + u.completion_tokens;
        }
        u
    })
}
