//! The admin endpoint as the binary wires it: `[admin] listen` in the config file, and
//! `memha status` reading it.

mod common;

use std::process::Command;

use common::repl::free_port;
use common::{http_get, Server};

#[test]
fn config_file_turns_on_the_admin_endpoint() {
    let admin_port = free_port();
    let dir = std::env::temp_dir().join(format!("memha-admin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("memha.toml");
    std::fs::write(
        &conf,
        format!("[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n"),
    )
    .unwrap();
    let server = Server::start(&["--config", conf.to_str().unwrap()]);
    let mut c = server.connect();
    c.expect("set k 0 0 1\r\nv\r\n", "STORED\r\n");
    c.expect("get k\r\n", "VALUE k 0 1\r\nv\r\nEND\r\n");

    let health = http_get(admin_port, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let ready = http_get(admin_port, "/ready");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let metrics = http_get(admin_port, "/metrics");
    assert!(metrics.contains("\nmemha_items 1\n"), "{metrics}");
    assert!(metrics.contains("memha_get_hits_total 1\n"), "{metrics}");

    let out = Command::new(env!("CARGO_BIN_EXE_memha"))
        .args(["status", "--addr", &format!("127.0.0.1:{admin_port}")])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("items"), "{table}");

    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    // With the node gone, status says it cannot connect and exits non-zero.
    let out = Command::new(env!("CARGO_BIN_EXE_memha"))
        .args(["status", "--addr", &format!("127.0.0.1:{admin_port}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("memha status: "));
}
