//! `ApiError`: every error the HTTP API answers with, in OpenAI's shape
//! `{"error": {"message", "type", "code"}}`, with its status decided in one place.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::store::StoreError;

/// An error answered to a client or an operator.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request body or a parameter is wrong.
    #[error("{message}")]
    BadRequest { message: String, code: &'static str },
    /// 400: one member of the body is wrong; `param` names it, as OpenAI does.
    #[error("{message}")]
    InvalidParam {
        param: &'static str,
        message: String,
        code: &'static str,
    },
    /// 401: missing or wrong key or token.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 404: no such route, provider or record.
    #[error("{0}")]
    NotFound(String),
    /// 404: no enabled provider serves the model.
    #[error("the model `{0}` is not served by any enabled provider")]
    UnknownModel(String),
    /// 409: a provider with that name exists.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is over the limit.
    #[error("the request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// 422: a field is well-formed but not acceptable.
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    /// 422: a provider's upstream failed the check asked for before adding it.
    #[error("health check failed: {0}")]
    CheckFailed(String),
    /// 502/503/504: every provider failed; carries the last upstream error.
    #[error("{message}")]
    Upstream {
        status: u16,
        message: String,
        retry_after_secs: Option<u64>,
    },
    /// 502: a provider's answer was over `routing.max_response_bytes`; not failed over.
    #[error(
        "the upstream answer is larger than the router's limit of {0} bytes (routing.max_response_bytes)"
    )]
    ResponseTooLarge(usize),
    /// 429: every provider of the model is at its limits and the routing queue was full, or
    /// the request waited `routing.queue_timeout_ms` in it.
    #[error("{message}")]
    RateLimited {
        message: String,
        code: &'static str,
        retry_after_secs: u64,
    },
    /// 503: something the router depends on is unavailable (database, actors).
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
    /// 403: the edge refused the request (its `Origin` or `Host`).
    #[error("{message}")]
    Forbidden { message: String, code: &'static str },
    /// 415: a body type no API client sends (text, form, multipart).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 408: the client did not send its whole body in time.
    #[error("{0}")]
    RequestTimeout(String),
}

impl ApiError {
    /// The stable `code` of the error body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::InvalidParam { code, .. } => code,
            ApiError::RateLimited { code, .. } => code,
            ApiError::Unauthorized(_) => "invalid_api_key",
            ApiError::NotFound(_) => "not_found",
            ApiError::UnknownModel(_) => "model_not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::CheckFailed(_) => "health_check_failed",
            ApiError::Upstream { status: 504, .. } => "upstream_timeout",
            ApiError::Upstream { status: 503, .. } => "no_provider_available",
            ApiError::Upstream { .. } => "upstream_error",
            ApiError::ResponseTooLarge(_) => "upstream_response_too_large",
            ApiError::Unavailable(_) => "service_unavailable",
            ApiError::Internal(_) => "internal_error",
            ApiError::Forbidden { code, .. } => code,
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RequestTimeout(_) => "request_timeout",
        }
    }

    /// OpenAI's `type` field.
    fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "authentication_error",
            ApiError::Upstream { .. } | ApiError::ResponseTooLarge(_) | ApiError::Unavailable(_) => {
                "upstream_error"
            }
            ApiError::Internal(_) => "server_error",
            ApiError::RateLimited { .. } => "rate_limit_error",
            _ => "invalid_request_error",
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            code: "invalid_request",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } | ApiError::InvalidParam { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) | ApiError::UnknownModel(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::InvalidField { .. } | ApiError::CheckFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Upstream { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            ApiError::ResponseTooLarge(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            log::error!("internal error: {detail}");
        }
        let mut resp = HttpResponse::build(self.status_code());
        if let ApiError::Upstream {
            retry_after_secs: Some(s),
            ..
        } = self
        {
            resp.insert_header(("retry-after", s.to_string()));
        }
        if let ApiError::RateLimited { retry_after_secs, .. } = self {
            resp.insert_header(("retry-after", retry_after_secs.to_string()));
        }
        let mut error =
            serde_json::json!({ "message": self.to_string(), "type": self.kind(), "code": self.code() });
        match self {
            ApiError::InvalidField { field, .. } => error["param"] = field.clone().into(),
            ApiError::InvalidParam { param, .. } => error["param"] = (*param).into(),
            _ => {}
        }
        resp.json(serde_json::json!({ "error": error }))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("not found".into()),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Pool(_) | StoreError::Connect(_) | StoreError::Mailbox => {
                log::warn!("database unavailable: {e}");
                ApiError::Unavailable("the database is unavailable; try again".into())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::config::FieldError> for ApiError {
    fn from(e: crate::config::FieldError) -> Self {
        ApiError::InvalidField {
            field: e.field,
            message: e.message,
        }
    }
}

/// The failover loop's final word, in OpenAI's shape.
impl From<crate::routing::RouteError> for ApiError {
    fn from(e: crate::routing::RouteError) -> Self {
        use crate::routing::RouteError;
        match e {
            RouteError::UnknownModel(model) => ApiError::UnknownModel(model),
            RouteError::TooLarge { limit } => ApiError::ResponseTooLarge(limit),
            RouteError::Failed {
                status,
                message,
                retry_after_secs,
            } => ApiError::Upstream {
                status,
                message,
                retry_after_secs,
            },
            RouteError::Queued {
                code,
                message,
                retry_after_secs,
            } => ApiError::RateLimited {
                message,
                code,
                retry_after_secs,
            },
        }
    }
}

/// An [`ApiError`] in Anthropic's shape, for the Anthropic Messages routes:
/// `{"type": "error", "error": {"type", "message"}}`, same status and `Retry-After`. The
/// `type` follows Anthropic's names for the status (`invalid_request_error`,
/// `authentication_error`, `not_found_error`, `overloaded_error`…).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AnthropicError(pub ApiError);

impl<E: Into<ApiError>> From<E> for AnthropicError {
    fn from(e: E) -> Self {
        AnthropicError(e.into())
    }
}

impl ResponseError for AnthropicError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = &self.0 {
            log::error!("internal error: {detail}");
        }
        let status = self.status_code();
        let mut resp = HttpResponse::build(status);
        if let ApiError::Upstream {
            retry_after_secs: Some(s),
            ..
        } = &self.0
        {
            resp.insert_header(("retry-after", s.to_string()));
        }
        let kind = crate::translate::errors::anthropic_type(status.as_u16());
        resp.json(serde_json::json!({
            "type": "error",
            "error": { "type": kind, "message": self.0.to_string() },
        }))
    }
}

impl From<crate::translate::TranslateError> for ApiError {
    fn from(e: crate::translate::TranslateError) -> Self {
        ApiError::InvalidParam {
            param: e.field,
            code: e.code(),
            message: e.message,
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(_: actix::MailboxError) -> Self {
        ApiError::Unavailable("the router is shutting down".into())
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;

    use super::*;

    fn body(e: &ApiError) -> serde_json::Value {
        let bytes = e.error_response().into_body().try_into_bytes().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn anthropic_routes_get_anthropic_shape() {
        let e = AnthropicError(ApiError::UnknownModel("x".into()));
        let r = e.error_response();
        assert_eq!(r.status(), 404);
        let bytes = r.into_body().try_into_bytes().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "error", "error": {"type": "not_found_error",
                "message": "the model `x` is not served by any enabled provider"}})
        );
        let e = AnthropicError(ApiError::Upstream {
            status: 503,
            message: "m".into(),
            retry_after_secs: Some(2),
        });
        let r = e.error_response();
        assert_eq!(r.headers().get("retry-after").unwrap(), "2");
        let v: serde_json::Value = serde_json::from_slice(&r.into_body().try_into_bytes().unwrap()).unwrap();
        assert_eq!(v["error"]["type"], "overloaded_error");
        let v = AnthropicError(ApiError::Unauthorized("no")).error_response();
        let v: serde_json::Value = serde_json::from_slice(&v.into_body().try_into_bytes().unwrap()).unwrap();
        assert_eq!(v["error"]["type"], "authentication_error");
    }

    #[test]
    fn errors_have_openai_shape_and_status() {
        let e = ApiError::UnknownModel("x".into());
        assert_eq!(e.status_code(), 404);
        assert_eq!(
            body(&e),
            serde_json::json!({"error": {"message": "the model `x` is not served by any enabled provider",
                "type": "invalid_request_error", "code": "model_not_found"}})
        );
        let e = ApiError::Upstream {
            status: 503,
            message: "m".into(),
            retry_after_secs: Some(3),
        };
        let r = e.error_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers().get("retry-after").unwrap(), "3");
        assert_eq!(ApiError::PayloadTooLarge(1).status_code(), 413);
        assert_eq!(ApiError::Unauthorized("no").status_code(), 401);
        let e = ApiError::InvalidField {
            field: "weight".into(),
            message: "bad".into(),
        };
        assert_eq!(body(&e)["error"]["param"], "weight");
        assert_eq!(
            body(&ApiError::Internal("secret detail".into()))["error"]["message"],
            "internal error"
        );
    }
}
