//! Running the node's replication inside the server's runtime: the replication listener, the
//! links to peers, readiness, and tombstone expiry. The protocol itself is `memha-repl`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::shared::{unix_now, Shared, Stop};

/// Serve replication on `listener` (already bound, non-blocking) until the process stops.
/// Does nothing when the node has no replication configured.
pub async fn serve(listener: std::net::TcpListener, shared: Arc<Shared>) {
    let Some(repl) = shared.repl.clone() else {
        return;
    };
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("replication listener: {e}");
            return;
        }
    };
    // Ready (for /ready, and later for VRRP) once the first sync from the peers is done.
    {
        let shared = shared.clone();
        let repl = repl.clone();
        tokio::spawn(async move {
            repl.wait_ready().await;
            shared.ready.store(true, Relaxed);
        });
    }
    // Tombstones only matter for a while; sweep the expired ones.
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                shared.store.expire_tombstones(unix_now() as u32);
            }
        });
    }
    let (tx, rx) = watch::channel(false);
    let mut stop = shared.stop_signal();
    tokio::spawn(async move {
        while *stop.borrow_and_update() == Stop::Running {
            if stop.changed().await.is_err() {
                break;
            }
        }
        let _ = tx.send(true);
    });
    repl.run(listener, rx).await;
}
