//! The `switchyard` binary: reads the configuration, starts the router, waits for SIGTERM or
//! Ctrl-C, and shuts down gracefully.

use std::process::ExitCode;

use switchyard::{Config, StartOptions};

/// Every request allocates and frees many small objects on its worker thread; mimalloc's
/// per-thread free lists cost about 1.2 µs less CPU per request than glibc's malloc here
/// (see the README's benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
usage: switchyard [--config FILE]
       switchyard rotate-key [--config FILE] [--new-key-file FILE]

Runs the Switchyard LLM router. Settings come from FILE (or SWITCHYARD_CONFIG) and the
environment: SWITCHYARD_LISTEN, DATABASE_URL, SWITCHYARD_ADMIN_TOKEN, SWITCHYARD_API_KEYS,
SWITCHYARD_WORKERS, SWITCHYARD_ADMIN_LISTEN, SWITCHYARD_SECRET_KEY (or
SWITCHYARD_SECRET_KEY_FILE), RUST_LOG. See switchyard.example.toml for every key.

rotate-key re-seals every stored provider key under a new secret key (64 hex characters,
e.g. `openssl rand -hex 32`), read from SWITCHYARD_NEW_SECRET_KEY or --new-key-file; the
current key is set as for the router (none when the keys are still plaintext). Stop the
router (every instance of a fleet) first, then start it with the new key.";

/// Turns transparent huge pages off for this process. mimalloc asks for them on the arenas
/// it commits up front, and where the kernel grants them on request (THP mode `madvise`,
/// common) every 2 MiB region a thread touches becomes resident: about 50 MB under the
/// benchmark's load instead of 23 MB, for no measurable speed. Latency-sensitive servers
/// commonly run without THP anyway. Pages faulted in before `main` keep their size.
fn allocator_options() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        // Only memory use depends on it; say so and go on.
        eprintln!("switchyard: could not turn transparent huge pages off; memory use may be higher");
    }
}

/// Raises the open-file soft limit to the hard limit. Every proxied stream holds two
/// descriptors (the client's and the upstream's), and the usual soft limit of 1024 would cap
/// the router near 500 open streams while the system allows far more. Returns the limit now
/// in force, if it could be read.
fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    Some(lim.rlim_cur)
}

fn main() -> ExitCode {
    allocator_options();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match raise_fd_limit() {
        Some(n) => log::info!("open files limit: {n} (about {} concurrent streams)", n / 2),
        None => log::warn!("could not read the open files limit"),
    }
    switchyard::panic::exit_on_panic();
    let mut args = std::env::args().skip(1).peekable();
    let mut config_file: Option<String> = None;
    let rotate = args.next_if(|a| a == "rotate-key").is_some();
    let mut new_key_file: Option<String> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--new-key-file" if rotate => match args.next() {
                Some(f) => new_key_file = Some(f),
                None => return usage_error("--new-key-file needs a file"),
            },
            "--config" | "-c" => match args.next() {
                Some(f) => config_file = Some(f),
                None => return usage_error("--config needs a file"),
            },
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--version" | "-V" => {
                println!("switchyard {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unknown argument {other:?}")),
        }
    }
    let config = match Config::load(config_file.as_deref(), &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchyard: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if rotate {
        return rotate_key(&config, new_key_file.as_deref());
    }
    if config.api_keys.is_empty() {
        log::warn!(
            "SWITCHYARD_API_KEYS is not set: /v1/* is open to anyone who can reach {}",
            config.listen
        );
    }
    let system = actix_web::rt::System::new();
    system.block_on(async move {
        let running = match switchyard::start(config, StartOptions { handle_signals: true }).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("switchyard: cannot start: {e}");
                return ExitCode::from(1);
            }
        };
        if running.admin_token_generated {
            // Printed once, to stdout only, so the operator can use the admin API; never logged.
            println!(
                "switchyard admin token (generated, shown once): {}",
                running.admin_token.expose()
            );
        }
        running.wait().await;
        // Everything is written and stopped: leave without running the C library's exit
        // handlers. Threads the shutdown bounded but could not join (a database call stuck on
        // a dead network, the actors' arbiters) may still be inside libpq or the allocator,
        // and tearing those down under them crashed the process (SIGSEGV) after a clean stop.
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // SAFETY: _exit ends the process at once; nothing of ours is left to run or flush.
        unsafe { libc::_exit(0) }
    })
}

/// `switchyard rotate-key`: see the usage text and `switchyard::rotate`.
fn rotate_key(config: &Config, new_key_file: Option<&str>) -> ExitCode {
    use switchyard::sealing::SealingKey;
    let new = match (new_key_file, std::env::var("SWITCHYARD_NEW_SECRET_KEY").ok()) {
        (Some(path), _) => SealingKey::from_file(path),
        (None, Some(hex)) => SealingKey::from_hex(&hex),
        (None, None) => {
            return usage_error("rotate-key needs the new key: SWITCHYARD_NEW_SECRET_KEY or --new-key-file");
        }
    };
    let new = match new {
        Ok(k) => k,
        Err(e) => {
            eprintln!("switchyard: new key: {e}");
            return ExitCode::from(2);
        }
    };
    match switchyard::rotate::rotate_key(config, &new) {
        Ok(done) => {
            println!(
                "re-sealed {} provider key(s) under key {}; start switchyard with the new key",
                done.rows, done.key_id
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard: rotate-key failed, nothing changed: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("switchyard: {message}\n\n{USAGE}");
    ExitCode::from(2)
}
