//! What API a provider speaks (`kind`) and which client endpoints it can serve.
//!
//! A kind decides the upstream wire format: the paths appended to `base_url`, the credential
//! header and the fixed headers. Each client route asks [`ProviderKind::serves`] whether a
//! provider answers it natively (the body is forwarded) or through translation (see
//! `crate::translate`). A new kind (Gemini, say) is one more variant here, its URLs in
//! `spec::Wire` and its translator: routing and the handlers only ask these questions.

use serde::{Deserialize, Serialize};

/// The API family a provider speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI's API and the many compatible ones: Bearer key, `/chat/completions`,
    /// `/embeddings`, `/responses`, `/completions`, `/models`.
    #[default]
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic's Messages API: `x-api-key`, `anthropic-version`, `/messages`,
    /// `/messages/count_tokens`, `/models`.
    Anthropic,
}

/// A client-facing API endpoint the router serves under `/v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `POST /v1/chat/completions` (OpenAI chat).
    Chat,
    /// `POST /v1/messages` (Anthropic Messages).
    Messages,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/responses` (OpenAI Responses).
    Responses,
    /// `POST /v1/completions` (OpenAI legacy completions).
    Completions,
    /// `POST /v1/messages/count_tokens` (Anthropic's token count of a Messages request).
    #[serde(rename = "count_tokens")]
    CountTokens,
}

/// How a provider serves an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// In the endpoint's own format: the client's body is forwarded (only `model` spliced).
    Native,
    /// Translated to and from the provider's chat format (OpenAI chat ⇄ Anthropic Messages).
    Translated,
}

impl Endpoint {
    pub const ALL: [Endpoint; 6] = [
        Endpoint::Chat,
        Endpoint::Messages,
        Endpoint::Embeddings,
        Endpoint::Responses,
        Endpoint::Completions,
        Endpoint::CountTokens,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Messages => "messages",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
            Endpoint::Completions => "completions",
            Endpoint::CountTokens => "count_tokens",
        }
    }

    /// The path under `base_url` (`/chat/completions`…).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Messages => "/messages",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
            Endpoint::Completions => "/completions",
            Endpoint::CountTokens => "/messages/count_tokens",
        }
    }

    /// The chat endpoint of the other format: what a translated request goes to.
    fn translation_partner(self) -> Option<Endpoint> {
        match self {
            Endpoint::Chat => Some(Endpoint::Messages),
            Endpoint::Messages => Some(Endpoint::Chat),
            _ => None,
        }
    }
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
        }
    }

    /// The endpoints this kind of API has; the default of a provider's `endpoints`.
    pub fn native_endpoints(self) -> &'static [Endpoint] {
        match self {
            ProviderKind::OpenAi => &[
                Endpoint::Chat,
                Endpoint::Embeddings,
                Endpoint::Responses,
                Endpoint::Completions,
            ],
            ProviderKind::Anthropic => &[Endpoint::Messages, Endpoint::CountTokens],
        }
    }

    /// How a provider of this kind whose upstream offers `offered` serves `wanted`: natively
    /// when it offers it, translated when it offers the other chat format, else not at all.
    pub fn serves(offered: &[Endpoint], wanted: Endpoint) -> Option<Service> {
        if offered.contains(&wanted) {
            return Some(Service::Native);
        }
        wanted
            .translation_partner()
            .filter(|p| offered.contains(p))
            .map(|_| Service::Translated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde() {
        for k in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
            let s = serde_json::to_value(k).unwrap();
            assert_eq!(s, k.as_str());
            assert_eq!(serde_json::from_value::<ProviderKind>(s).unwrap(), k);
        }
        for e in Endpoint::ALL {
            let s = serde_json::to_value(e).unwrap();
            assert_eq!(s, e.as_str());
        }
        assert!(serde_json::from_value::<ProviderKind>("gemini".into()).is_err());
    }

    #[test]
    fn chat_formats_are_served_across_kinds_the_rest_only_natively() {
        let openai = ProviderKind::OpenAi.native_endpoints();
        let anthropic = ProviderKind::Anthropic.native_endpoints();
        assert_eq!(
            ProviderKind::serves(openai, Endpoint::Chat),
            Some(Service::Native)
        );
        assert_eq!(
            ProviderKind::serves(openai, Endpoint::Messages),
            Some(Service::Translated)
        );
        assert_eq!(
            ProviderKind::serves(anthropic, Endpoint::Chat),
            Some(Service::Translated)
        );
        assert_eq!(
            ProviderKind::serves(anthropic, Endpoint::Messages),
            Some(Service::Native)
        );
        for e in [Endpoint::Embeddings, Endpoint::Responses, Endpoint::Completions] {
            assert_eq!(ProviderKind::serves(anthropic, e), None);
            assert_eq!(ProviderKind::serves(openai, e), Some(Service::Native));
        }
        // Counting tokens has no OpenAI counterpart: Anthropic-kind providers only.
        assert_eq!(
            ProviderKind::serves(anthropic, Endpoint::CountTokens),
            Some(Service::Native)
        );
        assert_eq!(ProviderKind::serves(openai, Endpoint::CountTokens), None);
        assert_eq!(
            ProviderKind::serves(&[Endpoint::Messages], Endpoint::CountTokens),
            None
        );
        // An embeddings-only provider serves neither chat format.
        assert_eq!(
            ProviderKind::serves(&[Endpoint::Embeddings], Endpoint::Messages),
            None
        );
    }
}
