//! A standalone scriptable OpenAI- and Anthropic-compatible upstream, for the README demo and the
//! benchmark.
//!
//! ```text
//! cargo run --example mock_upstream -- --port 9001 --name primary
//! ```
//!
//! Arguments are parsed by hand to keep the example free of extra dependencies.

use std::{process::ExitCode, str::FromStr};

use mock_upstream::{Endpoint, MockOptions, MockUpstream};

const USAGE: &str = "\
usage: mock_upstream [options]

Serves until Ctrl-C: POST /v1/chat/completions, /v1/messages (Anthropic), /v1/embeddings,
/v1/completions, /v1/responses, and GET /v1/models.

options:
  --port N              port to bind (default 0: any free port)
  --host ADDR           interface to bind (default 127.0.0.1)
  --name NAME           shown in answers and the x-mock-name header (default mock)
  --latency-ms MS       delay before every response head (default 0)
  --fail-rate R         probability 0.0..=1.0 of answering --fail-status (default 0.0)
  --status CODE         status of every answer; non-2xx answers an OpenAI error (default 200)
  --fail-status CODE    status of random failures (default 500)
  --retry-after SECS    add Retry-After to error answers
  --location URL        add Location to error answers (for a 3xx --status)
  --stream-chunks N     content chunks of streamed answers (default 3)
  --chunk-delay-ms MS   delay between stream chunks (default 0)
  --cut-after-chunks N  abort streamed answers after N chunks
  --stall               never answer (requests are held open)
  --stream-error-after N  end streams after N chunks with the route's error event
  --only-on LIST        apply the failure options only to these routes (comma-separated:
                        chat,models,messages,embeddings,completions,responses)
  --call-tools          answer requests that list tools with a call to the first tool
  --anthropic-key KEY   /v1/messages answers 401 unless x-api-key is KEY
  --cache-read-tokens N report N Anthropic cache_read_input_tokens
  --embedding-dims N    embedding length when the request gives no dimensions (default 8)
  --models A,B          ids listed by GET /v1/models (default gpt-4o-mini)
  --workers N           worker threads (default 1)
  --record              record requests (off by default: costs memory and time)
  -h, --help            print this help

With the default status 200, the requested model also scripts the answer:
fail-<code> answers <code>, slow-<ms>ms adds latency, mock-bad-request answers 400,
spaced-<ms>ms streams its chat chunks <ms> apart.
A request whose tool_choice forces a tool gets a tool call even without --call-tools.";

/// A command-line problem: reported with the usage hint and exit code 2.
struct UsageError(String);

fn value<T: FromStr>(flag: &str, raw: Option<String>) -> Result<T, UsageError> {
    let raw = raw.ok_or_else(|| UsageError(format!("{flag} needs a value")))?;
    raw.parse()
        .map_err(|_| UsageError(format!("invalid value for {flag}: {raw:?}")))
}

/// A route name of `--only-on`.
fn endpoint(name: &str) -> Result<Endpoint, UsageError> {
    Endpoint::ALL
        .into_iter()
        .find(|e| e.path().trim_start_matches('/').split('/').next() == Some(name))
        .ok_or_else(|| UsageError(format!("unknown route in --only-on: {name:?}")))
}

/// Parses the arguments; `Ok(None)` means help was printed.
fn parse(args: impl Iterator<Item = String>) -> Result<Option<MockOptions>, UsageError> {
    let mut opts = MockOptions {
        record: false,
        ..MockOptions::new("mock")
    };
    let b = &mut opts.behavior;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut val = || inline.clone().or_else(|| args.next());
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--port" => opts.port = value(&flag, val())?,
            "--host" => opts.host = value(&flag, val())?,
            "--name" => opts.name = value(&flag, val())?,
            "--workers" => opts.workers = value(&flag, val())?,
            "--record" => opts.record = true,
            "--latency-ms" => b.latency_ms = value(&flag, val())?,
            "--fail-rate" => {
                let r: f64 = value(&flag, val())?;
                if !(0.0..=1.0).contains(&r) {
                    return Err(UsageError(format!("--fail-rate must be in 0.0..=1.0, got {r}")));
                }
                b.fail_rate = r;
            }
            "--status" => b.status = value(&flag, val())?,
            "--fail-status" => b.fail_status = value(&flag, val())?,
            "--retry-after" => b.retry_after_secs = Some(value(&flag, val())?),
            "--location" => b.location = Some(value(&flag, val())?),
            "--stream-chunks" => b.stream_chunks = value(&flag, val())?,
            "--chunk-delay-ms" => b.chunk_delay_ms = value(&flag, val())?,
            "--cut-after-chunks" => b.cut_after_chunks = Some(value(&flag, val())?),
            "--stall" => b.stall = true,
            "--stream-error-after" => b.stream_error_after_chunks = Some(value(&flag, val())?),
            "--only-on" => {
                let list: String = value(&flag, val())?;
                b.only_on = list
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(endpoint)
                    .collect::<Result<_, _>>()?;
            }
            "--call-tools" => b.call_tools = true,
            "--anthropic-key" => b.anthropic_api_key = Some(value(&flag, val())?),
            "--cache-read-tokens" => b.cache_read_tokens = Some(value(&flag, val())?),
            "--embedding-dims" => b.embedding_dims = value(&flag, val())?,
            "--models" => {
                let list: String = value(&flag, val())?;
                b.models = list
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            _ => return Err(UsageError(format!("unknown argument: {arg}"))),
        }
    }
    Ok(Some(opts))
}

#[actix_web::main]
async fn main() -> ExitCode {
    let opts = match parse(std::env::args().skip(1)) {
        Ok(Some(opts)) => opts,
        Ok(None) => return ExitCode::SUCCESS,
        Err(UsageError(msg)) => {
            eprintln!("mock_upstream: {msg}\n(run with --help for usage)");
            return ExitCode::from(2);
        }
    };
    let name = opts.name.clone();
    let mock = match MockUpstream::start_with(opts).await {
        Ok(mock) => mock,
        Err(e) => {
            eprintln!("mock_upstream: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("mock upstream {name} listening on {}", mock.base_url());

    if let Err(e) = actix_rt::signal::ctrl_c().await {
        eprintln!("mock_upstream: cannot wait for Ctrl-C: {e}");
    }
    mock.stop().await;
    ExitCode::SUCCESS
}
