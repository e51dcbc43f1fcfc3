//! A TCP proxy a test can break and restore, placed between the router and PostgreSQL to
//! simulate a database outage. While broken it closes every open connection and refuses new
//! ones (accepts and drops them at once). While stalled it answers nothing at all: open
//! connections stay open but nothing is forwarded, and new ones are accepted and held, as a
//! half-open network path or a hung server looks from the router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};

pub struct ChaosProxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    /// Bumped on every break, so connections opened before it close themselves.
    epoch: Arc<AtomicU64>,
    /// Connections accepted and passed on.
    accepted: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ChaosProxy {
    /// Proxies to `target` (host:port). Runs on its own thread with its own runtime, so it
    /// keeps working while the test's thread awaits.
    pub fn start(target: &str) -> ChaosProxy {
        let target = target.to_string();
        let up = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let epoch = Arc::new(AtomicU64::new(0));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let accepted = Arc::new(AtomicU64::new(0));
        let (up2, epoch2, accepted2, stalled2) =
            (up.clone(), epoch.clone(), accepted.clone(), stalled.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => return,
                        accepted = listener.accept() => {
                            let Ok((client, _)) = accepted else { continue };
                            if !up2.load(Ordering::SeqCst) {
                                drop(client);
                                continue;
                            }
                            if stalled2.load(Ordering::SeqCst) {
                                tokio::spawn(hold(client, stalled2.clone()));
                                continue;
                            }
                            accepted2.fetch_add(1, Ordering::SeqCst);
                            let target = target.clone();
                            let (up3, epoch3, stalled3) = (up2.clone(), epoch2.clone(), stalled2.clone());
                            tokio::spawn(pipe(client, target, up3, epoch3, stalled3));
                        }
                    }
                }
            });
        });
        let addr = addr_rx.recv().expect("proxy address");
        ChaosProxy {
            addr,
            up,
            stalled,
            epoch,
            accepted,
            stop: Some(stop_tx),
        }
    }

    /// Closes every connection and refuses new ones.
    pub fn break_now(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Connections accepted (and passed on) so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
        self.stalled.store(false, Ordering::SeqCst);
    }

    /// Stops answering: connections stay open, nothing passes either way.
    pub fn stall_now(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn pipe(
    mut client: TcpStream,
    target: String,
    up: Arc<AtomicBool>,
    epoch: Arc<AtomicU64>,
    stalled: Arc<AtomicBool>,
) {
    let born = epoch.load(Ordering::SeqCst);
    let Ok(mut server) = TcpStream::connect(&target).await else {
        return;
    };
    let watch = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if epoch.load(Ordering::SeqCst) != born
                || !up.load(Ordering::SeqCst)
                || stalled.load(Ordering::SeqCst)
            {
                return;
            }
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = watch => {}
    }
    // Stalled: keep both ends open, forward nothing.
    hold(client, stalled).await;
    drop(server);
}

/// Holds a connection open without reading or writing while the proxy is stalled.
async fn hold(client: TcpStream, stalled: Arc<AtomicBool>) {
    while stalled.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(client);
}
