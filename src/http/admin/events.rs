//! `GET /api/events`: provider events as server-sent events. Each subscriber reads its own
//! bounded queue; one that falls behind gets a `lagged` event saying how many it missed,
//! and routing never waits for it.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use super::Admin;
use crate::events::EventBus;
use crate::http::AppState;

/// A comment line every so often keeps idle connections (and proxies) open.
const KEEPALIVE: Duration = Duration::from_secs(15);

pub async fn events(_: Admin, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(event_stream(&state.events))
}

/// One subscriber's SSE byte stream; it ends when shutdown starts.
pub fn event_stream(bus: &EventBus) -> impl Stream<Item = Result<Bytes, std::io::Error>> + 'static {
    let rx = bus.subscribe();
    let closed = Box::pin(bus.closed());
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
    hello.chain(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, EventKind, Severity};

    fn text(b: &Bytes) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[actix_rt::test]
    async fn a_lagging_subscriber_is_told_and_publishing_never_waits() {
        let bus = EventBus::default();
        let mut stream = Box::pin(event_stream(&bus));
        assert_eq!(text(&stream.next().await.unwrap().unwrap()), ": subscribed\n\n");
        // Far more than the queue holds, with nobody reading: publish returns at once.
        let started = std::time::Instant::now();
        for i in 0..5_000 {
            bus.publish(Event::new(
                EventKind::ProviderSwitch,
                Severity::Medium,
                format!("switch {i}"),
            ));
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        let first = text(&stream.next().await.unwrap().unwrap());
        assert!(
            first.starts_with("event: lagged\ndata: {\"missed\":3976}"),
            "{first}"
        );
        let next = text(&stream.next().await.unwrap().unwrap());
        assert!(
            next.starts_with("event: provider_switch\n") && next.contains("switch 3976"),
            "{next}"
        );
        bus.close();
        let rest: Vec<_> = stream.collect().await;
        assert!(rest.len() <= 1023, "the stream ends at shutdown");
    }
}
