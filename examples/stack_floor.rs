//! The floor of Switchyard's HTTP stack: actix-web in front, awc to the upstream, and nothing
//! else. No routing, no usage, no health, no translation, no edge checks: the request body is
//! sent to one upstream and its answer (whole, or streamed as it arrives) comes back.
//!
//! The benchmark runs it beside nginx and Switchyard (`scripts/bench.sh`,
//! `scripts/bench-streams.sh --target floor`) to tell what the required stack costs by itself
//! from what Switchyard adds on top. It is configured as Switchyard is where that changes the
//! cost: the same allocator, transparent huge pages off, `TCP_NODELAY` on accepted
//! connections, one awc client per worker with redirects, default headers and the default
//! timeout off, keep-alive to the upstream.
//!
//! ```text
//! cargo run --release --example stack_floor -- --port 8080 --upstream http://127.0.0.1:9001 --workers 2
//! ```

use std::process::ExitCode;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{App, HttpResponse, HttpServer, web};
use awc::Client;
use bytes::Bytes;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
usage: stack_floor --upstream URL [--port N] [--workers N]

Serves POST /v1/chat/completions by sending the body to URL/v1/chat/completions and
answering with what comes back. --port 0 (the default) takes any free port and prints it.";

/// The most of an upstream answer read into memory, as Switchyard's default.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

struct Upstream {
    client: Client,
    url: awc::http::Uri,
}

async fn proxy(body: Bytes, upstream: web::Data<Upstream>) -> HttpResponse {
    let sent = upstream
        .client
        .post(upstream.url.clone())
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .send_body(body)
        .await;
    let mut answer = match sent {
        Ok(answer) => answer,
        Err(e) => return HttpResponse::BadGateway().body(e.to_string()),
    };
    let mut out = HttpResponse::build(answer.status());
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    if let Some(ct) = &content_type {
        out.insert_header((header::CONTENT_TYPE, ct.clone()));
    }
    let streamed = content_type
        .as_ref()
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    if streamed {
        return out.streaming(answer);
    }
    match answer.body().limit(MAX_ANSWER).await {
        Ok(bytes) => out.body(bytes),
        Err(e) => HttpResponse::BadGateway().body(e.to_string()),
    }
}

struct Args {
    port: u16,
    upstream: String,
    workers: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        upstream: String::new(),
        workers: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => args.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--upstream" => args.upstream = value()?.trim_end_matches('/').to_owned(),
            "--workers" => {
                args.workers = value()?.parse().map_err(|e| format!("--workers: {e}"))?;
                if args.workers == 0 || args.workers > 1024 {
                    return Err("--workers: 1 to 1024".into());
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.upstream.is_empty() {
        return Err("--upstream is required".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("stack_floor: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let url: awc::http::Uri = match format!("{}/v1/chat/completions", args.upstream).parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("stack_floor: --upstream: {e}");
            return ExitCode::from(2);
        }
    };
    // As Switchyard does at start (see its main): THP would make mimalloc's arenas resident.
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    let run = actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            let upstream = Upstream {
                // Switchyard's own client set-up (connect timeout and pool limit as its
                // defaults): the floor differs from the router only by what runs around it.
                client: switchyard::upstream::build_client(Duration::from_secs(5), 8192),
                url: url.clone(),
            };
            App::new()
                .app_data(web::Data::new(upstream))
                .app_data(web::PayloadConfig::new(MAX_ANSWER))
                .route("/v1/chat/completions", web::post().to(proxy))
        })
        .workers(args.workers)
        .h1_allow_half_closed(false)
        .tcp_nodelay(true)
        .max_connections(25_000)
        .bind(("127.0.0.1", args.port))?;
        for addr in server.addrs() {
            println!("listening on {addr}");
        }
        server.run().await
    });
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stack_floor: {e}");
            ExitCode::FAILURE
        }
    }
}
