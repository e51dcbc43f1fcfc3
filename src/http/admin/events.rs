//! `GET /api/events`: provider events as server-sent events. Each subscriber reads its own
//! bounded queue; one that falls behind gets a `lagged` event saying how many it missed,
//! and routing never waits for it.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;

use super::Admin;
use crate::http::AppState;

/// A comment line every so often keeps idle connections (and proxies) open.
const KEEPALIVE: Duration = Duration::from_secs(15);

pub async fn events(_: Admin, state: web::Data<AppState>) -> HttpResponse {
    let rx = state.events.subscribe();
    let closed = Box::pin(state.events.closed());
    let stream = futures_util::stream::unfold((rx, closed), |(mut rx, mut closed)| async move {
        let next = tokio::select! {
            _ = &mut closed => return None,
            next = tokio::time::timeout(KEEPALIVE, rx.recv()) => next,
        };
        let chunk = match next {
            Err(_) => Bytes::from_static(b": keepalive\n\n"),
            Ok(Ok(event)) => {
                let kind = serde_json::to_value(event.kind).ok()?.as_str()?.to_string();
                let data = serde_json::to_string(&*event).ok()?;
                Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
            }
            Ok(Err(RecvError::Lagged(n))) => {
                Bytes::from(format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n"))
            }
            Ok(Err(RecvError::Closed)) => return None,
        };
        Some((Ok::<_, std::io::Error>(chunk), (rx, closed)))
    });
    // The first bytes go out at once, so a client knows it is subscribed.
    let hello = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(Bytes::from_static(b": subscribed\n\n"))
    });
    use futures_util::StreamExt;
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(hello.chain(stream))
}
