//! The README's quick start for a replicating pair, from the example files as shipped:
//! `deploy/examples/pair-a.toml` and `pair-b.toml` start two nodes on loopback that replicate,
//! and each node's status page, `/metrics` and `memha status` show the pair.
//!
//! Only the port numbers are changed (to free ones), so the test cannot collide with a cache
//! already running on 11211.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::repl::{free_port, wait_until};

const WAIT: Duration = Duration::from_secs(15);
use common::{http_get, Server};

#[test]
fn example_pair_replicates_and_shows_both_nodes() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples");
    let dir = std::env::temp_dir().join(format!("memha-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Every port of the examples, mapped to a free one.
    let ports: Vec<(u16, u16)> = [11211, 11212, 11411, 11412, 18081, 18082]
        .into_iter()
        .map(|p| (p, free_port()))
        .collect();
    let port = |p: u16| ports.iter().find(|(a, _)| *a == p).unwrap().1;
    let mut confs = Vec::new();
    for name in ["pair-a.toml", "pair-b.toml"] {
        let mut text = std::fs::read_to_string(examples.join(name)).unwrap();
        for (from, to) in &ports {
            text = text.replace(&from.to_string(), &to.to_string());
        }
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_memha"))
            .args(["check-config", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        confs.push(path);
    }
    let a = Server::start(&["--config", confs[0].to_str().unwrap()]);
    let b = Server::start(&["--config", confs[1].to_str().unwrap()]);
    // (The test harness passes `-p 0`, which overrides the client port; the replication and
    // admin ports are the files'.)
    let (admin_a, admin_b) = (port(18081), port(18082));

    // Written on A, read on B.
    let mut ca = a.connect();
    let mut cb = b.connect();
    wait_until("both nodes ready", WAIT, || {
        http_get(admin_a, "/ready").starts_with("HTTP/1.1 200")
            && http_get(admin_b, "/ready").starts_with("HTTP/1.1 200")
    });
    ca.expect("set greeting 0 0 5\r\nhello\r\n", "STORED\r\n");
    wait_until("the write to reach B", WAIT, || {
        cb.send(b"get greeting\r\n");
        cb.read_until_end().contains("hello")
    });

    // Each node's metrics and status page show its peer streaming.
    for (admin, peer_repl) in [(admin_a, port(11412)), (admin_b, port(11411))] {
        let peer = format!("127.0.0.1:{peer_repl}");
        wait_until("the peer link to stream", WAIT, || {
            let m = http_get(admin, "/metrics");
            m.contains(&format!("memha_replication_peer_up{{peer=\"{peer}\"}} 1"))
        });
        let page = http_get(admin, "/");
        assert!(
            page.contains(&peer),
            "status page names the peer {peer}: {page}"
        );
        assert!(page.contains("streaming"), "{page}");

        let out = Command::new(env!("CARGO_BIN_EXE_memha"))
            .args(["status", "--addr", &format!("127.0.0.1:{admin}")])
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{table}");
        assert!(table.contains("replicating with 1 peer"), "{table}");
        assert!(
            table.contains(&peer) && table.contains("streaming"),
            "{table}"
        );
    }
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}
