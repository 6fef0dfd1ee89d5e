//! The config file: `memha --config`, `check-config`, `print-config`
//! (`memha::config_file`, and the flags applied over it in `memha::cli`).

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{run_to_exit, Server};
use memha::cli::{parse_args, Cli, RunOptions};
use memha::config_file::{
    self, parse_str, to_toml, AckMode, ConfigError, LogLevel, Secrets, VirtualIp, VrrpState,
};
use memha_server::config::BindingProtocol;

const MIB: usize = 1024 * 1024;

/// A file in a fresh temporary directory, removed with it.
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(text: &str) -> TempFile {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "memha-config-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("memha.toml");
        std::fs::write(&path, text).unwrap();
        TempFile { dir, path }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ok(text: &str) -> RunOptions {
    parse_str("t.toml", text).unwrap_or_else(|e| panic!("{text}\n-> {e}"))
}

fn error(text: &str) -> ConfigError {
    match parse_str("t.toml", text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

/// Asserts `text` fails at `line:col` with a message containing every one of `parts`.
fn assert_error_at(text: &str, line: usize, col: usize, parts: &[&str]) {
    let e = error(text);
    assert_eq!(
        (e.line, e.column),
        (line, col),
        "wrong place for {e} in:\n{text}"
    );
    assert_eq!(e.file, "t.toml");
    assert!(
        e.to_string().starts_with(&format!("t.toml:{line}:{col}: ")),
        "{e}"
    );
    for part in parts {
        assert!(e.message.contains(part), "{e:?} lacks {part:?}");
    }
}

fn cli(args: &[&str]) -> Result<Cli, String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    parse_args(&args).map_err(|e| e.0)
}

fn run(args: &[&str]) -> RunOptions {
    match cli(args) {
        Ok(Cli::Run(o)) => *o,
        other => panic!("{args:?}: expected Run, got {other:?}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A minimal valid VRRP instance, with `extra` lines added.
fn vrrp(extra: &str) -> String {
    format!(
        "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"br0\"\nvirtual_router_id = 51\n\
         virtual_ipaddress = [\"192.168.68.46\"]\n{extra}"
    )
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/memha.toml")
}

const FULL: &str = r#"
[server]
port = 11311
udp_port = 11312
listen = ["127.0.0.1", "::1"]
unix_mask = 0o750
memory_limit_mb = 200
no_evict = true
item_size_max = "2m"
max_connections = 4096
threads = 2
reqs_per_event = 50
cas_disabled = true
flush_disabled = true
shutdown_enabled = true
protocol = "ascii"
backlog = 512
verbosity = 1
idle_timeout = 600
user = "daemon"
pid_file = "/var/run/memha.pid"
daemonize = true
enable_coredumps = true
extended = ["modern", "hashpower=20"]

[logging]
level = "debug"

[replication]
port = 11411
peers = ["T2", "10.0.0.3:11411", "[fd00::4]:11411"]
secret_file = "/etc/memha/secret"
ack = "sync"
backlog_mb = 128
node_id = 7

[[vrrp_instance]]
name = "VI_1"
interface = "br0"
state = "MASTER"
virtual_router_id = 51
priority = 150
advert_int = 2
version = 2
nopreempt = true
preempt_delay = 30
authentication = { auth_type = "PASS", auth_pass = "s3cr#t\"x" }
virtual_ipaddress = ["192.168.68.46", "192.168.68.47/24"]
unicast_src_ip = "192.168.68.10"
unicast_peer = ["192.168.68.11", "192.168.68.12"]
track_interface = ["eth0", "eth1"]
notify_master = "/etc/keepalived/scripts/memcached_master.sh"
notify_backup = "/etc/keepalived/scripts/memcached_backup.sh"
notify_fault = "/etc/keepalived/scripts/memcached_fault.sh"
notify_stop = "/etc/keepalived/scripts/memcached_stop.sh"
notify = "/usr/local/bin/vrrp-notify --all"

[[vrrp_instance]]
name = "VI_6"
interface = "br0"
virtual_router_id = 52
version = 3
advert_int = 0.1
virtual_ipaddress = ["fd00::46/64"]

[admin]
listen = "127.0.0.1:11313"
"#;

#[test]
fn every_section_parses() {
    let o = ok(FULL);
    let c = &o.server;
    assert_eq!(c.tcp_port, 11311);
    assert_eq!(c.udp_port, 11312);
    assert_eq!(c.listen, vec![ip("127.0.0.1"), ip("::1")]);
    assert_eq!(c.unix_mask, 0o750);
    assert_eq!(c.memory_limit, 200 * MIB);
    assert!(c.no_evict && c.cas_disabled && c.flush_disabled && c.shutdown_enabled);
    assert_eq!(c.item_size_max, 2 * MIB);
    assert_eq!(c.max_connections, 4096);
    assert_eq!(c.threads, 2);
    assert_eq!(c.reqs_per_event, 50);
    assert_eq!(c.protocol, BindingProtocol::Ascii);
    assert_eq!(c.backlog, 512);
    assert_eq!(c.verbosity, 1);
    assert_eq!(c.idle_timeout, 600);
    assert_eq!(c.ignored_options, vec!["modern", "hashpower=20"]);
    assert_eq!(o.user.as_deref(), Some("daemon"));
    assert_eq!(o.pid_file, Some(PathBuf::from("/var/run/memha.pid")));
    assert!(o.daemonize && o.max_core);

    assert_eq!(o.log_level, Some(LogLevel::Debug));
    assert_eq!(o.log_level(), LogLevel::Debug);

    assert_eq!(o.repl_port, Some(11411));
    assert_eq!(
        o.repl_peers,
        vec!["T2", "10.0.0.3:11411", "[fd00::4]:11411"]
    );
    assert_eq!(o.repl_secret_file, Some(PathBuf::from("/etc/memha/secret")));
    assert_eq!(o.repl_ack, AckMode::Sync);
    assert_eq!(o.repl_backlog_mb, 128);
    assert_eq!(o.repl_node_id, Some(7));

    assert_eq!(o.vrrp_instances.len(), 2);
    let v = &o.vrrp_instances[0];
    assert_eq!(v.name, "VI_1");
    assert_eq!(v.interface, "br0");
    assert_eq!(v.state, VrrpState::Master);
    assert_eq!(v.virtual_router_id, 51);
    assert_eq!(v.priority, 150);
    assert_eq!(v.advert_int, 2.0);
    assert_eq!(v.version, 2);
    assert!(v.nopreempt);
    assert_eq!(v.preempt_delay, 30.0);
    assert_eq!(v.auth_pass.as_deref(), Some("s3cr#t\"x"));
    assert_eq!(
        v.virtual_ipaddress,
        vec![
            VirtualIp {
                addr: ip("192.168.68.46"),
                prefix: None
            },
            VirtualIp {
                addr: ip("192.168.68.47"),
                prefix: Some(24)
            }
        ]
    );
    assert_eq!(v.unicast_src_ip, Some(ip("192.168.68.10")));
    assert_eq!(
        v.unicast_peer,
        vec![ip("192.168.68.11"), ip("192.168.68.12")]
    );
    assert_eq!(v.track_interface, vec!["eth0", "eth1"]);
    assert_eq!(
        v.notify_master.as_deref(),
        Some("/etc/keepalived/scripts/memcached_master.sh")
    );
    assert_eq!(
        v.notify_backup.as_deref(),
        Some("/etc/keepalived/scripts/memcached_backup.sh")
    );
    assert_eq!(
        v.notify_fault.as_deref(),
        Some("/etc/keepalived/scripts/memcached_fault.sh")
    );
    assert_eq!(
        v.notify_stop.as_deref(),
        Some("/etc/keepalived/scripts/memcached_stop.sh")
    );
    assert_eq!(
        v.notify.as_deref(),
        Some("/usr/local/bin/vrrp-notify --all")
    );

    let v6 = &o.vrrp_instances[1];
    assert_eq!(v6.version, 3);
    assert_eq!(v6.advert_int, 0.1);
    assert_eq!(v6.state, VrrpState::Backup, "keepalived's default");
    assert_eq!(v6.priority, 100, "keepalived's default");
    assert!(!v6.nopreempt);
    assert_eq!(v6.auth_pass, None);

    assert_eq!(o.admin_listen, Some("127.0.0.1:11313".parse().unwrap()));
}

#[test]
fn empty_file_is_the_defaults() {
    let o = ok("");
    let d = run(&[]);
    assert_eq!(to_toml(&o, Secrets::Show), to_toml(&d, Secrets::Show));
    assert_eq!(o.log_level, None);
    assert_eq!(o.log_level(), LogLevel::Warn);
    assert_eq!(o.repl_ack, AckMode::Async);
    assert_eq!(o.repl_backlog_mb, config_file::DEFAULT_BACKLOG_MB);
    assert!(o.vrrp_instances.is_empty() && o.admin_listen.is_none());
    // Empty sections are fine too.
    ok("[server]\n[logging]\n[replication]\n");
}

#[test]
fn value_forms() {
    // Sizes as integers or suffixed strings, like -m / -I.
    assert_eq!(
        ok("[server]\nmemory_limit_mb = \"1g\"").server.memory_limit,
        1024 * MIB
    );
    assert_eq!(
        ok("[server]\nmemory_limit_mb = \"3584k\"")
            .server
            .memory_limit,
        3584 * 1024
    );
    assert_eq!(
        ok("[server]\nitem_size_max = 524288").server.item_size_max,
        524288
    );
    assert_eq!(
        ok("[server]\nitem_size_max = \"512k\"")
            .server
            .item_size_max,
        524288
    );
    // The mask as a TOML octal integer or an octal string.
    assert_eq!(ok("[server]\nunix_mask = \"770\"").server.unix_mask, 0o770);
    assert_eq!(ok("[server]\nunix_mask = 0o700").server.unix_mask, 0o700);
    // A port inside listen wins over `port`, as -l 127.0.0.1:11400 does over -p.
    let o = ok("[server]\nport = 1\nlisten = [\"127.0.0.1:11400\"]");
    assert_eq!(
        (o.server.tcp_port, o.server.listen),
        (11400, vec![ip("127.0.0.1")])
    );
    // idle_timeout through extended, like -o idle_timeout=N.
    assert_eq!(
        ok("[server]\nextended = [\"idle_timeout=9\"]")
            .server
            .idle_timeout,
        9
    );
    // threads are capped at 256, like -t.
    assert_eq!(ok("[server]\nthreads = 1000").server.threads, 256);
    // advert_int as an integer or a float; dotted keys are TOML, and fine.
    assert_eq!(
        ok(&vrrp("advert_int = 3.0")).vrrp_instances[0].advert_int,
        3.0
    );
    assert_eq!(ok("server.port = 5").server.tcp_port, 5);
}

#[test]
fn syntax_and_type_errors() {
    assert_error_at("[server\nport = 1\n", 1, 8, &["expected `]`"]);
    assert_error_at("[server]\nport = \n", 2, 8, &[]);
    assert_error_at("[server]\nport = 1\nport = 2\n", 3, 1, &["duplicate key"]);
    assert_error_at(
        "[server]\nport = \"x\"\n",
        2,
        8,
        &["server.port", "expected an integer"],
    );
    assert_error_at(
        "[server]\nitem_size_max = true\n",
        2,
        17,
        &["server.item_size_max", "integer or a string"],
    );
    assert_error_at(
        "[server]\nlisten = \"127.0.0.1\"\n",
        2,
        10,
        &["server.listen", "expected a list"],
    );
    assert_error_at(
        "[vrrp_instance]\nname = \"a\"\n",
        1,
        1,
        &["[[vrrp_instance]]", "double brackets"],
    );
}

#[test]
fn unknown_keys_are_named() {
    assert_error_at("bogus = 1\n", 1, 1, &["unknown field `bogus`"]);
    assert_error_at("[srever]\n", 1, 2, &["unknown field `srever`"]);
    assert_error_at(
        "[server]\nport = 1\nprot = 2\n",
        3,
        1,
        &["unknown field `prot`", "expected one of", "`port`"],
    );
    assert_error_at(
        "[logging]\nlevle = \"info\"\n",
        2,
        1,
        &["unknown field `levle`"],
    );
    assert_error_at(
        "[replication]\npeer = []\n",
        2,
        1,
        &["unknown field `peer`"],
    );
    assert_error_at("[admin]\nport = 1\n", 2, 1, &["unknown field `port`"]);
    assert_error_at(
        &vrrp("vrrp_version = 3\n"),
        6,
        1,
        &["unknown field `vrrp_version`"],
    );
    assert_error_at(
        &vrrp("authentication = { auth_type = \"PASS\", pass = \"x\" }\n"),
        6,
        40,
        &["unknown field `pass`"],
    );
}

#[test]
fn server_errors() {
    let cases: &[(&str, usize, usize, &[&str])] = &[
        (
            "[server]\nport = 70000",
            2,
            8,
            &["server.port", "TCP port", "0 to 65535"],
        ),
        ("[server]\nport = -1", 2, 8, &["server.port", "0 to 65535"]),
        (
            "[server]\nudp_port = 65536",
            2,
            12,
            &["server.udp_port", "UDP port"],
        ),
        (
            "[server]\nthreads = 0",
            2,
            11,
            &["server.threads", "the number of threads must be at least 1"],
        ),
        (
            "[server]\nmax_connections = 0",
            2,
            19,
            &["connection limit", "at least 1"],
        ),
        ("[server]\nreqs_per_event = -4", 2, 18, &["at least 1"]),
        (
            "[server]\nbacklog = 99999999999",
            2,
            11,
            &["listen backlog", "too large"],
        ),
        (
            "[server]\nverbosity = -1",
            2,
            13,
            &["verbosity level", "whole number"],
        ),
        (
            "[server]\nidle_timeout = -1",
            2,
            16,
            &["idle_timeout", "whole number of seconds"],
        ),
        (
            "[server]\nmemory_limit_mb = 0",
            2,
            19,
            &["at least 1 megabyte"],
        ),
        (
            "[server]\nmemory_limit_mb = \"2t\"",
            2,
            19,
            &["whole number of megabytes"],
        ),
        (
            "[server]\nitem_size_max = 1000",
            2,
            17,
            &["server.item_size_max", "at least 1024"],
        ),
        (
            "[server]\nitem_size_max = \"2g\"\nmemory_limit_mb = 8192",
            2,
            17,
            &["at most 1 gigabyte"],
        ),
        ("[server]\nunix_mask = 700", 2, 13, &["octal", "0o700"]),
        (
            "[server]\nunix_mask = \"800\"",
            2,
            13,
            &["octal number from 0 to 777"],
        ),
        (
            "[server]\nprotocol = \"http\"",
            2,
            12,
            &["server.protocol", "auto, ascii or binary"],
        ),
        (
            "[server]\nlisten = [\"::1\", \"nowhere\"]",
            2,
            18,
            &["server.listen", "\"nowhere\" is not an IP address"],
        ),
        (
            "[server]\nlisten = [\"127.0.0.1:1\", \"127.0.0.2:2\"]",
            2,
            26,
            &["one TCP port", "\"127.0.0.1:1\" asks for 1"],
        ),
        (
            "[server]\nunix_socket = \"\"",
            2,
            15,
            &["server.unix_socket", "must not be empty"],
        ),
        (
            "[server]\nuser = \"\"",
            2,
            8,
            &["server.user", "must not be empty"],
        ),
        (
            "[server]\nauth_file = \"/nonexistent/users\"",
            2,
            13,
            &["server.auth_file", "cannot read the auth file"],
        ),
        (
            "[server]\nauth_file = \"/\"",
            2,
            13,
            &["not a regular file"],
        ),
        (
            "[server]\nextended = [\"idle_timeout=x\"]",
            2,
            13,
            &["whole number of seconds"],
        ),
        (
            "[server]\nidle_timeout = 5\nextended = [\"idle_timeout=9\"]",
            3,
            13,
            &["keep one"],
        ),
        (
            "[logging]\nlevel = \"loud\"",
            2,
            9,
            &["logging.level", "\"warn\""],
        ),
    ];
    for (text, line, col, parts) in cases {
        assert_error_at(text, *line, *col, parts);
    }
}

#[test]
fn item_size_against_memory_either_way() {
    // Both in the file: the error is at item_size_max and names where memory came from.
    assert_error_at(
        "[server]\nmemory_limit_mb = 2\nitem_size_max = \"2m\"\n",
        3,
        17,
        &[
            "server.item_size_max",
            "half the memory limit",
            "server.memory_limit_mb (t.toml:2:19)",
        ],
    );
    // Only memory in the file: the default item size no longer fits.
    assert_error_at(
        "[server]\nmemory_limit_mb = 1\n",
        2,
        19,
        &[
            "server.memory_limit_mb",
            "default item size limit",
            "half the memory limit",
        ],
    );
    // One from the file, the other from a flag: the same rule, whichever way each arrived.
    let f = TempFile::new("[server]\nmemory_limit_mb = 200\n");
    let e = cli(&["--config", f.path(), "-I", "150m"]).unwrap_err();
    assert!(e.starts_with("-I 150m: "), "{e}");
    assert!(e.contains("half the memory limit"), "{e}");
    assert!(
        e.contains(&format!("server.memory_limit_mb ({}:2:19)", f.path())),
        "{e}"
    );
    assert_eq!(
        run(&["--config", f.path(), "-I", "100m"])
            .server
            .item_size_max,
        100 * MIB
    );
    let f = TempFile::new("[server]\nitem_size_max = \"16m\"\n");
    let e = cli(&["--config", f.path(), "-m", "16"]).unwrap_err();
    assert!(
        e.starts_with(&format!("server.item_size_max ({}:2:17): ", f.path())),
        "{e}"
    );
    assert!(e.contains("-m 16"), "{e}");
    // The flag-only message is unchanged.
    assert!(cli(&["-I", "256m"])
        .unwrap_err()
        .contains("the default -m 64"));
    // Same rule for threads whichever way it arrives.
    assert!(cli(&["-t", "0"])
        .unwrap_err()
        .contains("the number of threads must be at least 1"));
    assert!(error("[server]\nthreads = 0")
        .message
        .contains("the number of threads must be at least 1"));
}

#[test]
fn replication_and_admin_errors() {
    let cases: &[(&str, usize, usize, &[&str])] = &[
        (
            "[replication]\nport = 0",
            2,
            8,
            &["replication.port", "1 to 65535"],
        ),
        ("[replication]\nport = 65536", 2, 8, &["replication.port"]),
        (
            "[replication]\npeers = [\"T2\", \"a b\"]",
            2,
            16,
            &["replication.peers", "\"a b\" is not a peer address"],
        ),
        (
            "[replication]\npeers = [\"T2:0\"]",
            2,
            10,
            &["port must be from 1 to 65535"],
        ),
        (
            "[replication]\npeers = [\"T2\", \"T2\"]",
            2,
            16,
            &["listed twice"],
        ),
        (
            "[replication]\nack = \"maybe\"",
            2,
            7,
            &["replication.ack", "\"async\" or \"sync\""],
        ),
        ("[replication]\nbacklog_mb = 0", 2, 14, &["at least 1"]),
        (
            "[replication]\nnode_id = 1024",
            2,
            11,
            &["node id", "0 to 1023"],
        ),
        (
            "[replication]\nsecret_file = \"\"",
            2,
            15,
            &["must not be empty"],
        ),
        ("[admin]\n", 1, 1, &["admin", "listen is required"]),
        (
            "[admin]\nlisten = \"127.0.0.1\"",
            2,
            10,
            &["admin.listen", "with a port"],
        ),
        (
            "[admin]\nlisten = \"127.0.0.1:0\"",
            2,
            10,
            &["admin.listen"],
        ),
    ];
    for (text, line, col, parts) in cases {
        assert_error_at(text, *line, *col, parts);
    }
    // -x follows the same rule as peers.
    assert!(cli(&["-x", "a b"])
        .unwrap_err()
        .contains("not a peer address"));
}

#[test]
fn vrrp_errors() {
    // vrrp("…") puts the extra lines at line 6.
    let cases: &[(&str, usize, usize, &[&str])] = &[
        (
            "priority = 0",
            6,
            12,
            &["vrrp_instance \"VI_1\".priority", "1 to 254"],
        ),
        ("priority = 255", 6, 12, &["1 to 254"]),
        (
            "state = \"master\"",
            6,
            9,
            &["state", "\"MASTER\" or \"BACKUP\""],
        ),
        ("version = 4", 6, 11, &["version", "2 or 3"]),
        (
            "advert_int = 0.5",
            6,
            14,
            &["advert_int", "fractions of a second need version = 3"],
        ),
        ("advert_int = 0.5\nversion = 2", 6, 14, &["version = 3"]),
        ("advert_int = 0", 6, 14, &["greater than 0"]),
        ("advert_int = 256", 6, 14, &["1 to 255"]),
        (
            "advert_int = 0.005\nversion = 3",
            6,
            14,
            &["hundredths of a second"],
        ),
        ("advert_int = 41\nversion = 3", 6, 14, &["40.95"]),
        ("preempt_delay = 1001", 6, 17, &["0 to 1000"]),
        (
            "version = 3\nauthentication = { auth_type = \"PASS\", auth_pass = \"x\" }",
            7,
            18,
            &["authentication is VRRPv2 only"],
        ),
        (
            "authentication = { auth_type = \"PASS\", auth_pass = \"memcached\" }",
            6,
            52,
            &["auth_pass", "9 bytes", "at most 8", "\"memcache\""],
        ),
        (
            "authentication = { auth_type = \"PASS\", auth_pass = \"\" }",
            6,
            52,
            &["must not be empty"],
        ),
        (
            "authentication = { auth_type = \"AH\", auth_pass = \"x\" }",
            6,
            32,
            &["AH", "not supported"],
        ),
        (
            "authentication = { auth_pass = \"x\" }",
            6,
            18,
            &["auth_type is required"],
        ),
        (
            "authentication = { auth_type = \"PASS\" }",
            6,
            18,
            &["auth_pass is required"],
        ),
        (
            "authentication = { auth_type = \"PASS\", auth_pass = \"<redacted>\" }",
            6,
            52,
            &["print-config", "put the real password back"],
        ),
        (
            "unicast_peer = [\"10.0.0.1\", \"nope\"]",
            6,
            29,
            &["unicast_peer", "\"nope\" is not an IP address"],
        ),
        ("unicast_peer = [\"fd00::1\"]", 6, 17, &["address family"]),
        (
            "track_interface = [\"a/b\"]",
            6,
            20,
            &["not an interface name"],
        ),
        (
            "notify_master = \"\"",
            6,
            17,
            &["notify_master", "must not be empty"],
        ),
    ];
    for (extra, line, col, parts) in cases {
        assert_error_at(&vrrp(extra), *line, *col, parts);
    }
    assert_error_at(
        &vrrp("unicast_src_ip = \"10.0.0.1\""),
        6,
        18,
        &["only used with unicast_peer"],
    );

    // Keys of the instance itself.
    let base = "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"br0\"\nvirtual_router_id = 51\n";
    assert_error_at(base, 1, 1, &["virtual_ipaddress key is required"]);
    assert_error_at(
        &format!("{base}virtual_ipaddress = []"),
        5,
        21,
        &["at least one address"],
    );
    assert_error_at(
        &format!("{base}virtual_ipaddress = [\"10.0.0.1\", \"10.0.0.300\"]"),
        5,
        34,
        &["virtual_ipaddress", "not an IP address or CIDR"],
    );
    assert_error_at(
        &format!("{base}virtual_ipaddress = [\"10.0.0.1/33\"]"),
        5,
        22,
        &["prefix length must be from 0 to 32"],
    );
    assert_error_at(
        &format!("{base}virtual_ipaddress = [\"fd00::1\"]"),
        5,
        22,
        &["IPv4 addresses only", "version = 3"],
    );
    assert_error_at(
        &format!("{base}version = 3\nvirtual_ipaddress = [\"10.0.0.1\", \"fd00::1\"]"),
        6,
        34,
        &["one address family"],
    );
    assert_error_at(
        "[[vrrp_instance]]\ninterface = \"br0\"\n",
        1,
        1,
        &["vrrp_instance[0]", "name key is required"],
    );
    assert_error_at(
        "[[vrrp_instance]]\nname = \"VI_1\"\nvirtual_router_id = 1\n",
        1,
        1,
        &["vrrp_instance \"VI_1\"", "interface key is required"],
    );
    assert_error_at(
        "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"br0\"\nvirtual_router_id = 0\n",
        4,
        21,
        &["virtual_router_id", "1 to 255"],
    );
    assert_error_at(
        "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"a-very-long-interface\"\n",
        3,
        13,
        &["not an interface name"],
    );
    // Two instances: names unique, one instance per VRID on an interface; the second
    // instance's errors point into the second table.
    let two = format!("{}\n{}", vrrp(""), vrrp(""));
    assert_error_at(&two, 8, 8, &["already named \"VI_1\""]);
    let two = format!(
        "{}\n{}",
        vrrp(""),
        vrrp("").replace("VI_1", "VI_2").replace(".46", ".47")
    );
    assert_error_at(
        &two,
        10,
        21,
        &["VI_2", "\"VI_1\" already uses virtual router 51 on br0"],
    );
    let two = format!(
        "{}\n[[vrrp_instance]]\nname = \"VI_2\"\ninterface = \"br0\"\nvirtual_ipaddress = [\"10.0.0.1\"]\n",
        vrrp("")
    );
    assert_error_at(&two, 7, 1, &["VI_2", "virtual_router_id key is required"]);
}

#[test]
fn flags_override_the_file() {
    let f = TempFile::new(
        r#"
[server]
port = 11311
listen = ["10.1.1.1", "10.1.1.2"]
memory_limit_mb = 200
threads = 8
verbosity = 1
extended = ["modern", "idle_timeout=60"]
user = "daemon"

[logging]
level = "error"

[replication]
port = 11411
peers = ["T2", "T3"]
"#,
    );
    // The file alone.
    let o = run(&["--config", f.path()]);
    assert_eq!(o.server.tcp_port, 11311);
    assert_eq!(o.server.listen, vec![ip("10.1.1.1"), ip("10.1.1.2")]);
    assert_eq!(o.server.memory_limit, 200 * MIB);
    assert_eq!(o.server.threads, 8);
    assert_eq!(o.log_level(), LogLevel::Error);
    assert_eq!(o.repl_peers, vec!["T2", "T3"]);
    assert_eq!(o.config_file.as_deref(), Some(Path::new(f.path())));

    // Flags win, wherever --config stands.
    for args in [
        vec!["--config", f.path(), "-p", "0", "-t", "2", "-m", "64"],
        vec!["-p", "0", "-t", "2", "--config", f.path(), "-m", "64"],
        vec!["-p0", "-t2", "-m64", &format!("--config={}", f.path())],
    ] {
        let o = run(&args);
        assert_eq!(o.server.tcp_port, 0, "{args:?}");
        assert_eq!(o.server.threads, 2, "{args:?}");
        assert_eq!(o.server.memory_limit, 64 * MIB, "{args:?}");
        // Untouched keys keep the file's values.
        assert_eq!(o.server.listen, vec![ip("10.1.1.1"), ip("10.1.1.2")]);
        assert_eq!(o.user.as_deref(), Some("daemon"));
        assert_eq!(o.server.idle_timeout, 60);
    }

    // -l replaces the file's list (then adds up as usual); -x likewise.
    let o = run(&[
        "--config",
        f.path(),
        "-l",
        "127.0.0.1",
        "-l",
        "::1",
        "-x",
        "T9",
    ]);
    assert_eq!(o.server.listen, vec![ip("127.0.0.1"), ip("::1")]);
    assert_eq!(o.repl_peers, vec!["T9"]);
    assert_eq!(o.repl_port, Some(11411));
    let o = run(&["--config", f.path(), "-X", "11500"]);
    assert_eq!(o.repl_port, Some(11500));
    // A port in -l wins over the file's port.
    assert_eq!(
        run(&["--config", f.path(), "-l", "127.0.0.1:11999"])
            .server
            .tcp_port,
        11999
    );

    // -v counts from zero and replaces both verbosity and [logging] level.
    let o = run(&["--config", f.path(), "-vv"]);
    assert_eq!(o.server.verbosity, 2);
    assert_eq!(o.log_level(), LogLevel::Debug);
    let o = run(&["--config", f.path(), "--verbose=3"]);
    assert_eq!((o.server.verbosity, o.log_level()), (3, LogLevel::Trace));

    // -o merges into extended; its idle_timeout replaces the file's.
    let o = run(&["--config", f.path(), "-o", "idle_timeout=5,hashpower=20"]);
    assert_eq!(o.server.idle_timeout, 5);
    assert_eq!(o.server.ignored_options, vec!["modern", "hashpower=20"]);

    // Flag errors still come out as flag errors.
    assert_eq!(
        cli(&["--config", f.path(), "-t", "0"]).unwrap_err(),
        "-t 0: the number of threads must be at least 1"
    );
    // File errors come out with the place in the file.
    let bad = TempFile::new("[server]\nthreads = 0\n");
    assert_eq!(
        cli(&["--config", bad.path(), "-t", "4"]).unwrap_err(),
        format!(
            "{}:2:11: server.threads: the number of threads must be at least 1",
            bad.path()
        )
    );
    assert!(cli(&["--config", "/nonexistent/memha.toml"])
        .unwrap_err()
        .contains("/nonexistent/memha.toml: cannot read the config file"));
    assert!(cli(&["--config", f.path(), "--config", f.path()])
        .unwrap_err()
        .contains("only one config file"));
    assert!(cli(&["--config"]).unwrap_err().contains("requires a value"));
    assert!(cli(&["--config="]).unwrap_err().contains("non-empty"));
    // -h before --config does not read it; help and version are unchanged.
    assert!(matches!(
        cli(&["-h", "--config", "/nonexistent"]),
        Ok(Cli::Help)
    ));
}

#[test]
fn subcommands_parse() {
    assert!(
        matches!(cli(&["check-config", "a.toml", "b.toml"]), Ok(Cli::CheckConfig(f)) if f.len() == 2)
    );
    assert!(cli(&["check-config"]).unwrap_err().contains("needs a file"));
    assert!(cli(&["check-config", "-p", "1"])
        .unwrap_err()
        .contains("only file names"));
    match cli(&["print-config", "-p", "5"]) {
        Ok(Cli::PrintConfig(o)) => assert_eq!(o.server.tcp_port, 5),
        other => panic!("{other:?}"),
    }
    assert!(cli(&["print-config", "-t", "0"]).is_err());
    assert!(
        cli(&["-p", "5", "check-config"]).is_err(),
        "subcommands come first"
    );
    let help = memha::cli::help_text();
    for part in ["--config", "check-config", "print-config"] {
        assert!(help.contains(part), "help lacks {part}");
    }
}

#[test]
fn print_config_round_trips() {
    for text in [
        FULL,
        "",
        "[server]\nmemory_limit_mb = \"3584k\"\nitem_size_max = 1000000\n",
    ] {
        let o = ok(text);
        let shown = to_toml(&o, Secrets::Show);
        let again = parse_str("printed.toml", &shown)
            .unwrap_or_else(|e| panic!("print-config output does not read back: {e}\n{shown}"));
        assert_eq!(to_toml(&again, Secrets::Show), shown);
        // The parts not visible in the text compare equal too.
        assert_eq!(again.vrrp_instances, o.vrrp_instances);
        assert_eq!(again.server.listen, o.server.listen);
        assert_eq!(again.server.item_size_max, o.server.item_size_max);
        assert_eq!(again.server.memory_limit, o.server.memory_limit);
        assert_eq!(again.repl_peers, o.repl_peers);
        assert_eq!(again.log_level(), o.log_level());
    }
    // With flags on top, the printed config is the effective one.
    let f = TempFile::new(FULL);
    let mut o = run(&["--config", f.path(), "-p", "7", "-x", "T5", "-vv"]);
    assert!(to_toml(&o, Secrets::Show)
        .contains(&format!("# Read from {} and the command line.", f.path())));
    o.config_file = None; // only changes that comment line
    let printed = to_toml(&o, Secrets::Show);
    let again = parse_str("printed.toml", &printed).unwrap();
    assert_eq!(again.server.tcp_port, 7);
    assert_eq!(again.repl_peers, vec!["T5"]);
    assert_eq!(again.log_level(), LogLevel::Debug);
    assert_eq!(to_toml(&again, Secrets::Show), printed);
}

#[test]
fn print_config_redacts() {
    let o = ok(FULL);
    let redacted = to_toml(&o, Secrets::Redact);
    assert!(
        redacted.contains("auth_pass = \"<redacted>\""),
        "{redacted}"
    );
    assert!(!redacted.contains("s3cr#t"), "{redacted}");
    // The secret file's path is not a secret.
    assert!(redacted.contains("secret_file = \"/etc/memha/secret\""));
    // Reading the redacted output back says what to do rather than using "<redacted>".
    let e = parse_str("printed.toml", &redacted).unwrap_err();
    assert!(e.message.contains("put the real password back"), "{e}");
    // With the password put back, it is the same config.
    let restored = redacted.replace("<redacted>", "s3cr#t\\\"x");
    assert_eq!(
        to_toml(&parse_str("p.toml", &restored).unwrap(), Secrets::Show),
        to_toml(&o, Secrets::Show)
    );
    // Every key is there.
    for key in [
        "port",
        "udp_port",
        "listen",
        "unix_socket",
        "unix_mask",
        "memory_limit_mb",
        "no_evict",
        "item_size_max",
        "max_connections",
        "threads",
        "reqs_per_event",
        "cas_disabled",
        "flush_disabled",
        "shutdown_enabled",
        "auth_file",
        "protocol",
        "backlog",
        "verbosity",
        "idle_timeout",
        "user",
        "pid_file",
        "daemonize",
        "enable_coredumps",
        "extended",
        "level",
        "peers",
        "secret_file",
        "ack",
        "backlog_mb",
        "node_id",
        "name",
        "interface",
        "state",
        "virtual_router_id",
        "priority",
        "advert_int",
        "version",
        "nopreempt",
        "preempt_delay",
        "authentication",
        "virtual_ipaddress",
        "unicast_src_ip",
        "unicast_peer",
        "track_interface",
        "track_script",
        "notify_master",
        "notify_backup",
        "notify_fault",
        "notify_stop",
        "notify",
        "[admin]",
    ] {
        assert!(
            redacted.contains(&format!("\n{key} ")) || redacted.contains(key),
            "{key}"
        );
    }
    // Defaults are filled in; unset keys are comments.
    let d = to_toml(&ok(""), Secrets::Redact);
    for line in [
        "port = 11211",
        "memory_limit_mb = 64",
        "item_size_max = \"1m\"",
        "threads = 4",
        "unix_mask = 0o700",
        "protocol = \"auto\"",
        "level = \"warn\"",
        "ack = \"async\"",
        "# unix_socket is not set",
        "# port is not set",
    ] {
        assert!(d.contains(line), "defaults lack {line:?}:\n{d}");
    }
}

fn memha(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_memha"))
        .args(args)
        .output()
        .expect("run memha");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn example_file_passes_check_config() {
    let path = example_path();
    let o = config_file::load(&path).unwrap_or_else(|e| panic!("{e}"));
    // The seed's node T1.
    assert_eq!(o.server.tcp_port, 11311);
    assert_eq!(o.server.memory_limit, 200 * MIB);
    assert_eq!(o.repl_port, Some(11411));
    assert_eq!(o.repl_peers, vec!["T2"]);
    let v = &o.vrrp_instances[0];
    assert_eq!(
        (
            v.name.as_str(),
            v.interface.as_str(),
            v.virtual_router_id,
            v.priority
        ),
        ("VI_1", "br0", 51, 100)
    );
    assert_eq!(v.state, VrrpState::Backup);
    assert!(v.nopreempt);
    assert_eq!(v.auth_pass.as_deref(), Some("memcache"));
    assert_eq!(v.virtual_ipaddress[0].to_string(), "192.168.68.46");
    for (script, which) in [
        (&v.notify_master, "master"),
        (&v.notify_backup, "backup"),
        (&v.notify_fault, "fault"),
        (&v.notify_stop, "stop"),
    ] {
        assert_eq!(
            script.as_deref(),
            Some(format!("/etc/keepalived/scripts/memcached_{which}.sh").as_str())
        );
    }

    let p = path.to_str().unwrap();
    let (code, out, err) = memha(&["check-config", p]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, format!("{p}: ok\n").as_str(), "")
    );
}

#[test]
fn check_config_binary() {
    let good = TempFile::new("[server]\nport = 11400\n");
    let bad = TempFile::new("[server]\nport = 11400\n\n[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"br0\"\nvirtual_router_id = 51\npriority = 0\nvirtual_ipaddress = [\"10.0.0.1\"]\n");
    let (code, out, err) = memha(&["check-config", good.path()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{}: ok\n", good.path()));

    let (code, out, err) = memha(&["check-config", bad.path()]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert!(
        err.starts_with(&format!(
            "{}:8:12: vrrp_instance \"VI_1\".priority: ",
            bad.path()
        )),
        "{err}"
    );

    let syntax = TempFile::new("[server]\nport = = 1\n");
    let (code, _, err) = memha(&["check-config", syntax.path()]);
    assert_eq!(code, 1);
    assert!(err.starts_with(&format!("{}:2:", syntax.path())), "{err}");

    // Several files: each reported, exit 1 if any fails.
    let (code, out, err) = memha(&["check-config", good.path(), bad.path()]);
    assert_eq!(code, 1);
    assert_eq!(out, format!("{}: ok\n", good.path()));
    assert!(err.contains(":8:12:"), "{err}");

    let (code, _, err) = memha(&["check-config", "/nonexistent/memha.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("/nonexistent/memha.toml: cannot read"),
        "{err}"
    );
}

#[test]
fn print_config_binary() {
    let f = TempFile::new(FULL);
    let (code, out, err) = memha(&["print-config", "--config", f.path(), "-p", "4242"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\nport = 4242 "), "{out}");
    assert!(out.contains("auth_pass = \"<redacted>\""));
    assert!(!out.contains("s3cr#t"));
    // Without a file: the defaults, and a valid file.
    let (code, out, _) = memha(&["print-config"]);
    assert_eq!(code, 0);
    let o = parse_str("printed.toml", &out).unwrap();
    assert_eq!(o.server.tcp_port, 11211);
    let (code, _, err) = memha(&["print-config", "-t", "0"]);
    assert_eq!(code, 1);
    assert!(err.contains("-t 0"), "{err}");
    let (code, out, _) = memha(&["-h"]);
    assert_eq!(code, 0);
    for part in ["--config", "check-config", "print-config"] {
        assert!(out.contains(part), "help lacks {part}");
    }
}

#[test]
fn starts_and_serves_with_a_config_file() {
    let f = TempFile::new(
        r#"
[server]
port = 1                      # the harness's -p 0 overrides it
memory_limit_mb = 32
item_size_max = "2m"
threads = 2
max_connections = 100
idle_timeout = 300
extended = ["modern"]

[logging]
level = "warn"

[replication]                 # no peers, no port: fine
ack = "async"
"#,
    );
    let s = Server::start(&["--config", f.path()]);
    let mut c = s.connect();
    c.expect("set k 0 0 5\r\nhello\r\n", "STORED\r\n");
    c.expect("get k\r\n", "VALUE k 0 5\r\nhello\r\nEND\r\n");
    let settings = c.stats("settings");
    let get = |k: &str| {
        settings
            .iter()
            .find(|(n, _)| n == k)
            .unwrap_or_else(|| panic!("no {k}"))
            .1
            .clone()
    };
    assert_eq!(get("maxbytes"), (32 * MIB).to_string());
    assert_eq!(get("item_size_max"), (2 * MIB).to_string());
    assert_eq!(get("num_threads"), "2");
    assert_eq!(get("maxconns"), "100");
    assert_eq!(get("idle_timeout"), "300");
}

#[test]
fn refuses_to_start_with_what_it_cannot_run() {
    // Replication beyond loopback needs a secret: refused with a message saying so.
    let peers = TempFile::new("[replication]\nport = 11411\npeers = [\"10.1.2.3\"]\n");
    let (status, err) = run_to_exit(&["--config", peers.path(), "-p", "0", "-l", "127.0.0.1"]);
    assert!(!status.success());
    assert!(err.contains("no secret"), "{err}");

    let vrrp_file = TempFile::new(&vrrp(""));
    let (status, err) = run_to_exit(&["--config", vrrp_file.path(), "-p", "0", "-l", "127.0.0.1"]);
    assert!(!status.success());
    // No interface br0 here (or, not as root, no raw sockets): refused, naming the instance.
    assert!(err.contains("vrrp_instance \"VI_1\""), "{err}");

    // A bad file does not start either, and says where.
    let bad = TempFile::new("[server]\nthreads = 0\n");
    let (status, err) = run_to_exit(&["--config", bad.path()]);
    assert!(!status.success());
    assert!(
        err.contains(&format!("{}:2:11: server.threads", bad.path())),
        "{err}"
    );

    // The example file validates but cannot start here (no br0, no secret file).
    let (status, err) = run_to_exit(&[
        "--config",
        example_path().to_str().unwrap(),
        "-p",
        "0",
        "-l",
        "127.0.0.1",
    ]);
    assert!(!status.success());
    assert!(err.contains("br0") || err.contains("secret"), "{err}");
}

#[test]
fn vrrp_scripts_are_tracked_by_name() {
    let text = "[[vrrp_script]]\nname = \"chk\"\nscript = \"killall -0 memha\"\ninterval = 2\nfall = 3\nrise = 2\n\n".to_string()
        + &vrrp("track_script = [\"chk\"]");
    let f = TempFile::new(&text);
    let opts = config_file::load(Path::new(f.path())).unwrap();
    let v = &opts.vrrp_instances[0];
    assert_eq!(v.track_script.len(), 1);
    let s = &v.track_script[0];
    assert_eq!(
        (s.name.as_str(), s.script.as_str()),
        ("chk", "killall -0 memha")
    );
    assert_eq!((s.interval, s.timeout, s.fall, s.rise), (2.0, 2.0, 3, 2));
    // print-config writes both and reads back the same.
    let printed = config_file::to_toml(&opts, config_file::Secrets::Show);
    assert!(printed.contains("[[vrrp_script]]"), "{printed}");
    assert!(printed.contains("track_script = [\"chk\"]"), "{printed}");

    let unknown = TempFile::new(&vrrp("track_script = [\"nope\"]"));
    let err = config_file::load(Path::new(unknown.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no [[vrrp_script]] is named \"nope\""),
        "{err}"
    );
    let weighted =
        TempFile::new("[[vrrp_script]]\nname = \"chk\"\nscript = \"true\"\nweight = -20\n");
    let err = config_file::load(Path::new(weighted.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("only weight = 0"), "{err}");
}

#[test]
fn vrrp_instances_translate_for_the_speaker() {
    let f = TempFile::new(&vrrp(
        "priority = 150\nadvert_int = 0.05\nversion = 3\nnopreempt = true\nstate = \"MASTER\"\n\
         virtual_ipaddress = [\"10.0.0.46\", \"10.0.0.47/24\"]\nunicast_src_ip = \"10.0.0.11\"\n\
         unicast_peer = [\"10.0.0.12\"]\nnotify = \"/bin/true\"\n",
    )
    .replace("virtual_ipaddress = [\"192.168.68.46\"]\n", ""));
    let opts = config_file::load(Path::new(f.path())).unwrap();
    let spec = memha::vrrp_config::instance_spec(&opts.vrrp_instances[0]).unwrap();
    let c = &spec.config;
    assert_eq!((c.vrid, c.priority, c.advert_int_cs), (51, 150, 5));
    assert_eq!(c.version, memha_vrrp::Version::V3);
    assert!(c.nopreempt, "nopreempt stays on whatever the initial state");
    assert_eq!(c.initial_state, memha_vrrp::InitialState::Master);
    assert_eq!(spec.vip_prefixes, vec![32, 24]);
    assert_eq!(
        spec.unicast_peers,
        vec!["10.0.0.12".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert_eq!(spec.hooks.notify.as_deref(), Some("/bin/true"));
    assert!(
        c.primary_ip.is_unspecified(),
        "filled in from the interface by the speaker"
    );

    let v2 = TempFile::new(&vrrp(
        "authentication = { auth_type = \"PASS\", auth_pass = \"memcache\" }\n",
    ));
    let opts = config_file::load(Path::new(v2.path())).unwrap();
    let spec = memha::vrrp_config::instance_spec(&opts.vrrp_instances[0]).unwrap();
    assert_eq!(spec.config.auth, memha_vrrp::Auth::password(b"memcache"));
    assert_eq!(spec.config.advert_int_cs, 100);
}
