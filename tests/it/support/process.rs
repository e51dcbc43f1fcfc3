//! Router processes started from the built binary, for fleet and start-up tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ADMIN_TOKEN;

/// One router process. Killed on drop, so a failing test leaves nothing running.
pub struct Instance {
    child: Child,
    pub url: String,
    /// Everything the process logged (stderr).
    pub log: Arc<Mutex<String>>,
    /// Everything it printed (stdout).
    pub stdout: Arc<Mutex<String>>,
}

impl Instance {
    /// Starts an instance of a fleet: the config file, a database, the test admin token.
    pub fn start(db_url: &str, config_file: &std::path::Path) -> Instance {
        Instance::start_with_env(db_url, config_file, &[])
    }

    /// Like `start`, with more environment variables (or fewer: an empty value removes one).
    pub fn start_with_env(db_url: &str, config_file: &std::path::Path, env: &[(&str, &str)]) -> Instance {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.arg("--config")
            .arg(config_file)
            .env("DATABASE_URL", db_url)
            .env("SWITCHYARD_LISTEN", "127.0.0.1:0")
            .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SWITCHYARD_WORKERS", "2")
            .env("RUST_LOG", "info");
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        Instance::spawn(cmd)
    }

    /// Starts the binary as `cmd` says (stderr is read for the listening address and kept).
    pub fn spawn(mut cmd: Command) -> Instance {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the switchyard binary");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("listening on http://") {
                    let _ = tx.send(line[i + "listening on ".len()..].trim().to_string());
                }
                log2.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let out = Arc::new(Mutex::new(String::new()));
        let out2 = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                out2.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the instance did not start:\n{}", log.lock().unwrap())
        });
        Instance {
            child,
            url,
            log,
            stdout: out,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit after a signal.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the instance did not exit:\n{}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn metric(&self, client: &awc::Client, name: &str) -> Option<f64> {
        let mut r = client.get(format!("{}/metrics", self.url)).send().await.ok()?;
        let body = r.body().await.ok()?;
        String::from_utf8_lossy(&body)
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
