//! A panic anywhere ends the process.
//!
//! Every input that could panic is checked or clamped; this is the net for a bug that slips
//! through anyway. A panic inside an actix actor unwinds its arbiter's thread, so every actor
//! there is gone while the routing table still names them: a provider routing would pick but
//! nothing manages (no health, no retry timer, no reset). Restarting one actor from inside is
//! not enough, since its siblings on that thread died with it. So the binary logs the panic and
//! exits with status 70 (`EX_SOFTWARE`), and the process supervisor (systemd, Kubernetes)
//! starts a fresh one, which loads every provider and its stored health again.

/// The exit status after a panic.
pub const PANIC_EXIT_CODE: i32 = 70;

/// Installs the hook: the default report (message, location, backtrace if enabled), a log
/// line, then exit. Called once by the binary at start; not by the library's users.
pub fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        log::error!("a panic ended the router: {info}; exiting so the process supervisor restarts it");
        std::process::exit(PANIC_EXIT_CODE);
    }));
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use actix::prelude::*;

    struct Fragile;

    impl Actor for Fragile {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Break;

    impl Handler<Break> for Fragile {
        type Result = ();
        #[allow(clippy::panic, reason = "the bug this module is the net for")]
        fn handle(&mut self, _: Break, _: &mut Context<Self>) {
            panic!("an actor's bug");
        }
    }

    /// Run by `a_panicking_actor_ends_the_process` in a child process.
    #[test]
    #[ignore = "run in a child process by the test below"]
    fn child_with_a_panicking_actor() {
        if std::env::var_os("SWITCHYARD_PANIC_CHILD").is_none() {
            return;
        }
        super::exit_on_panic();
        let system = System::new();
        system.block_on(async {
            // On its own arbiter, as provider actors are.
            let arbiter = Arbiter::new();
            let addr = Fragile::start_in_arbiter(&arbiter.handle(), |_| Fragile);
            addr.do_send(Break);
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
    }

    #[test]
    fn a_panicking_actor_ends_the_process() {
        let started = Instant::now();
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "panic::tests::child_with_a_panicking_actor",
                "--ignored",
                "--nocapture",
            ])
            .env("SWITCHYARD_PANIC_CHILD", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(super::PANIC_EXIT_CODE), "{out:?}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "exited at once, not after the sleep"
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("an actor's bug"));
    }
}
