//! The memcached-compatible command line: `memha::cli::parse_args`.

use std::net::IpAddr;
use std::path::PathBuf;

use memha::cli::{help_text, parse_args, version_line, Cli, CliError, RunOptions};
use memha_server::config::BindingProtocol;

fn parse(args: &[&str]) -> Result<Cli, CliError> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    parse_args(&args)
}

fn run(args: &[&str]) -> RunOptions {
    match parse(args) {
        Ok(Cli::Run(opts)) => *opts,
        other => panic!("{args:?}: expected Run, got {other:?}"),
    }
}

fn error(args: &[&str]) -> String {
    match parse(args) {
        Err(e) => {
            assert_eq!(e.to_string(), e.0, "Display is the message");
            e.0
        }
        Ok(other) => panic!("{args:?}: expected an error, got {other:?}"),
    }
}

/// Asserts that `args` fail with a message containing every one of `parts`.
fn assert_error(args: &[&str], parts: &[&str]) {
    let msg = error(args);
    for part in parts {
        assert!(
            msg.contains(part),
            "{args:?}: message {msg:?} lacks {part:?}"
        );
    }
}

const MIB: usize = 1024 * 1024;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn defaults() {
    let o = run(&[]);
    let c = &o.server;
    assert_eq!(c.tcp_port, 11211);
    assert_eq!(c.udp_port, 0);
    assert!(c.listen.is_empty());
    assert_eq!(c.unix_socket, None);
    assert_eq!(c.unix_mask, 0o700);
    assert_eq!(c.memory_limit, 64 * MIB);
    assert!(!c.no_evict);
    assert_eq!(c.item_size_max, MIB);
    assert_eq!(c.max_connections, 1024);
    assert_eq!(c.threads, 4);
    assert_eq!(c.reqs_per_event, 20);
    assert!(!c.cas_disabled && !c.flush_disabled && !c.shutdown_enabled);
    assert_eq!(c.auth_file, None);
    assert_eq!(c.protocol, BindingProtocol::Auto);
    assert_eq!(c.backlog, 1024);
    assert_eq!(c.verbosity, 0);
    assert_eq!(c.idle_timeout, 0);
    assert!(c.ignored_options.is_empty());
    assert!(!o.daemonize && !o.lock_memory && !o.max_core);
    assert_eq!(o.pid_file, None);
    assert_eq!(o.user, None);
    assert!(o.repl_peers.is_empty());
    assert_eq!(o.repl_port, None);
    assert!(o.ignored_flags.is_empty());
}

#[test]
fn every_flag_with_separate_values() {
    let auth = std::env::temp_dir().join(format!("memha-cli-auth-{}", std::process::id()));
    std::fs::write(&auth, "user:pass\n").unwrap();
    let auth_s = auth.to_str().unwrap();
    let o = run(&[
        "-p",
        "12345",
        "-U",
        "12346",
        "-s",
        "/tmp/memha.sock",
        "-a",
        "755",
        "-l",
        "127.0.0.1",
        "-m",
        "128",
        "-M",
        "-I",
        "2m",
        "-c",
        "50",
        "-t",
        "8",
        "-R",
        "5",
        "-C",
        "-F",
        "-A",
        "-Y",
        auth_s,
        "-B",
        "ascii",
        "-b",
        "64",
        "-v",
        "-o",
        "idle_timeout=30",
        "-d",
        "-P",
        "/tmp/memha.pid",
        "-u",
        "nobody",
        "-k",
        "-r",
        "-x",
        "10.0.0.2",
        "-X",
        "11212",
        "-L",
        "-f",
        "1.5",
        "-n",
        "64",
        "-D",
        ":",
    ]);
    std::fs::remove_file(&auth).unwrap();
    let c = &o.server;
    assert_eq!(c.tcp_port, 12345);
    assert_eq!(c.udp_port, 12346);
    assert_eq!(c.unix_socket, Some(PathBuf::from("/tmp/memha.sock")));
    assert_eq!(c.unix_mask, 0o755);
    assert_eq!(c.listen, vec![ip("127.0.0.1")]);
    assert_eq!(c.memory_limit, 128 * MIB);
    assert!(c.no_evict);
    assert_eq!(c.item_size_max, 2 * MIB);
    assert_eq!(c.max_connections, 50);
    assert_eq!(c.threads, 8);
    assert_eq!(c.reqs_per_event, 5);
    assert!(c.cas_disabled && c.flush_disabled && c.shutdown_enabled);
    assert_eq!(c.auth_file, Some(auth.clone()));
    assert_eq!(c.protocol, BindingProtocol::Ascii);
    assert_eq!(c.backlog, 64);
    assert_eq!(c.verbosity, 1);
    assert_eq!(c.idle_timeout, 30);
    assert!(o.daemonize && o.lock_memory && o.max_core);
    assert_eq!(o.pid_file, Some(PathBuf::from("/tmp/memha.pid")));
    assert_eq!(o.user.as_deref(), Some("nobody"));
    assert_eq!(o.repl_peers, vec!["10.0.0.2".to_string()]);
    assert_eq!(o.repl_port, Some(11212));
    assert_eq!(o.ignored_flags, vec!["-L", "-f 1.5", "-n 64", "-D :"]);
}

#[test]
fn attached_values() {
    let o = run(&[
        "-p11212", "-U0", "-m256", "-I512k", "-t2", "-c10", "-R1", "-b1", "-Bbinary",
    ]);
    let c = &o.server;
    assert_eq!(c.tcp_port, 11212);
    assert_eq!(c.udp_port, 0);
    assert_eq!(c.memory_limit, 256 * MIB);
    assert_eq!(c.item_size_max, 512 * 1024);
    assert_eq!(c.threads, 2);
    assert_eq!(c.max_connections, 10);
    assert_eq!(c.reqs_per_event, 1);
    assert_eq!(c.backlog, 1);
    assert_eq!(c.protocol, BindingProtocol::Binary);
    assert_eq!(run(&["-l::1"]).server.listen, vec![ip("::1")]);
    assert_eq!(run(&["-oidle_timeout=5"]).server.idle_timeout, 5);
}

#[test]
fn bundled_flags() {
    assert_eq!(run(&["-vv"]).server.verbosity, 2);
    assert_eq!(run(&["-vvv"]).server.verbosity, 3);
    assert_eq!(run(&["-v", "-vv"]).server.verbosity, 3);
    let o = run(&["-dM"]);
    assert!(o.daemonize && o.server.no_evict);
    let o = run(&["-Ad"]);
    assert!(o.daemonize && o.server.shutdown_enabled);
    let o = run(&["-CFAMdkrv"]);
    let c = &o.server;
    assert!(c.cas_disabled && c.flush_disabled && c.shutdown_enabled && c.no_evict);
    assert!(o.daemonize && o.lock_memory && o.max_core);
    assert_eq!(c.verbosity, 1);
    // A flag with a value ends the cluster: the rest, or else the next argument, is its value.
    let o = run(&["-vvp", "11300"]);
    assert_eq!((o.server.verbosity, o.server.tcp_port), (2, 11300));
    let o = run(&["-vvp11300", "-d"]);
    assert_eq!((o.server.verbosity, o.server.tcp_port), (2, 11300));
    assert!(o.daemonize);
    // Like getopt, "-pv" means port "v", which is not a number.
    assert_error(&["-pv"], &["-p v", "TCP port"]);
}

#[test]
fn value_may_start_with_dash() {
    // getopt takes the next argument as the value whatever it looks like.
    assert_error(&["-p", "-d"], &["-p -d", "TCP port", "0 to 65535"]);
    assert_eq!(run(&["-u", "-d"]).user.as_deref(), Some("-d"));
}

#[test]
fn long_forms() {
    let auth = std::env::temp_dir().join(format!("memha-cli-auth-long-{}", std::process::id()));
    std::fs::write(&auth, "a:b\n").unwrap();
    let auth_arg = format!("--auth-file={}", auth.display());
    let o = run(&[
        "--port=11300",
        "--listen=127.0.0.1,::1",
        "--memory-limit=100",
        "--threads=3",
        "--max-conns=77",
        "--udp-port=11301",
        "--unix-socket=/tmp/x.sock",
        "--unix-mask=770",
        "--max-item-size=4m",
        "--disable-evictions",
        "--disable-cas",
        "--disable-flush-all",
        "--enable-shutdown",
        "--protocol=auto",
        "--listen-backlog=32",
        "--daemon",
        "--pidfile=/tmp/p.pid",
        "--user=memha",
        "--extended=idle_timeout=9,modern",
        &auth_arg,
        "--conn-requests=7",
        "--verbose",
        "--verbose",
        "--lock-memory",
        "--enable-coredumps",
    ]);
    std::fs::remove_file(&auth).unwrap();
    let c = &o.server;
    assert_eq!(c.tcp_port, 11300);
    assert_eq!(c.listen, vec![ip("127.0.0.1"), ip("::1")]);
    assert_eq!(c.memory_limit, 100 * MIB);
    assert_eq!(c.threads, 3);
    assert_eq!(c.max_connections, 77);
    assert_eq!(c.udp_port, 11301);
    assert_eq!(c.unix_socket, Some(PathBuf::from("/tmp/x.sock")));
    assert_eq!(c.unix_mask, 0o770);
    assert_eq!(c.item_size_max, 4 * MIB);
    assert!(c.no_evict && c.cas_disabled && c.flush_disabled && c.shutdown_enabled);
    assert_eq!(c.protocol, BindingProtocol::Auto);
    assert_eq!(c.backlog, 32);
    assert!(o.daemonize && o.lock_memory && o.max_core);
    assert_eq!(o.pid_file, Some(PathBuf::from("/tmp/p.pid")));
    assert_eq!(o.user.as_deref(), Some("memha"));
    assert_eq!(c.idle_timeout, 9);
    assert_eq!(c.ignored_options, vec!["modern"]);
    assert_eq!(c.auth_file, Some(auth));
    assert_eq!(c.reqs_per_event, 7);
    assert_eq!(c.verbosity, 2);

    // Separate values work for long options too, and memcached's own spellings.
    let o = run(&[
        "--port",
        "11400",
        "--conn-limit",
        "5",
        "--max-reqs-per-event",
        "3",
    ]);
    assert_eq!(o.server.tcp_port, 11400);
    assert_eq!(o.server.max_connections, 5);
    assert_eq!(o.server.reqs_per_event, 3);
    assert_eq!(run(&["--verbose=3"]).server.verbosity, 3);
    assert!(matches!(parse(&["--help"]), Ok(Cli::Help)));
    assert!(matches!(parse(&["--version"]), Ok(Cli::Version)));

    assert_error(&["--daemon=yes"], &["--daemon", "does not take a value"]);
    assert_error(&["--port"], &["--port", "requires a value"]);
    assert_error(&["--threads=0"], &["--threads 0", "at least 1"]);
    assert_error(&["--bogus"], &["unknown option --bogus", "memha -h"]);
}

#[test]
fn help_and_version() {
    assert!(matches!(parse(&["-h"]), Ok(Cli::Help)));
    assert!(matches!(parse(&["-V"]), Ok(Cli::Version)));
    assert!(matches!(parse(&["-p", "1", "-h"]), Ok(Cli::Help)));
    // Like getopt, what comes after -h is not looked at; what comes before is.
    assert!(matches!(parse(&["-h", "-Z"]), Ok(Cli::Help)));
    assert!(matches!(parse(&["-vh"]), Ok(Cli::Help)));
    assert_error(&["-Z", "-h"], &["unknown option -Z"]);
    assert_eq!(version_line(), "memha 0.1.0 (memcached 1.6 compatible)");
}

#[test]
fn help_text_contents() {
    let help = help_text();
    assert!(help.contains("unix-socket"));
    let lower = help.to_lowercase();
    for banned in ["sasl", "ext_path", "proxy_config", "enable-ssl"] {
        assert!(!lower.contains(banned), "help mentions {banned}");
    }
    for flag in [
        "-p", "-s", "-a", "-A", "-l", "-d", "-r", "-u", "-m", "-M", "-c", "-k", "-v", "-h", "-V",
        "-L", "-f", "-n", "-C", "-D", "-P", "-t", "-R", "-U", "-B", "-I", "-F", "-Y", "-b", "-x",
        "-X", "-o",
    ] {
        let listed = help
            .lines()
            .any(|l| l.starts_with(&format!("{flag},")) || l.starts_with(&format!("{flag} ")));
        assert!(listed, "help does not list {flag}:\n{help}");
    }
    assert!(help.contains("replicate with this peer"));
    for long in [
        "--repl-secret-file",
        "--repl-ack",
        "--repl-backlog-mb",
        "--repl-node-id",
    ] {
        assert!(help.contains(long), "help does not list {long}");
    }
    assert!(help.contains("idle_timeout"));
    for long in [
        "--port=",
        "--listen=",
        "--memory-limit=",
        "--threads=",
        "--udp-port=",
        "--unix-socket=",
        "--max-item-size=",
        "--disable-evictions",
        "--disable-cas",
        "--disable-flush-all",
        "--enable-shutdown",
        "--protocol=",
        "--listen-backlog=",
        "--daemon",
        "--pidfile=",
        "--user=",
        "--extended=",
        "--auth-file=",
        "--verbose",
        "--help",
        "--version",
    ] {
        assert!(help.contains(long), "help lacks {long}");
    }
}

#[test]
fn ports() {
    assert_eq!(run(&["-p", "0"]).server.tcp_port, 0);
    assert_eq!(run(&["-p", "65535"]).server.tcp_port, 65535);
    assert_error(&["-p", "65536"], &["-p 65536", "TCP port", "0 to 65535"]);
    assert_error(&["-p", "abc"], &["-p abc", "TCP port"]);
    assert_error(&["-p", "-1"], &["-p -1", "TCP port"]);
    assert_error(&["-U", "70000"], &["-U 70000", "UDP port", "0 to 65535"]);
    assert_error(&["-p"], &["-p", "requires a value"]);
    assert_error(&["-v", "-U"], &["-U", "requires a value"]);
}

#[test]
fn listen_addresses() {
    let c = run(&["-l", "127.0.0.1", "-l", "::1,10.1.2.3"]).server;
    assert_eq!(c.listen, vec![ip("127.0.0.1"), ip("::1"), ip("10.1.2.3")]);
    assert_eq!(run(&["-l", "0.0.0.0"]).server.listen, vec![ip("0.0.0.0")]);
    assert_eq!(
        run(&["-l", "localhost"]).server.listen,
        vec![ip("127.0.0.1")]
    );
    // Duplicates collapse.
    assert_eq!(
        run(&["-l", "127.0.0.1,127.0.0.1"]).server.listen,
        vec![ip("127.0.0.1")]
    );
    // addr:port sets the TCP port, whatever the order against -p.
    let c = run(&["-l", "127.0.0.1:12000"]).server;
    assert_eq!(
        (c.listen.clone(), c.tcp_port),
        (vec![ip("127.0.0.1")], 12000)
    );
    assert_eq!(
        run(&["-l", "127.0.0.1:12000", "-p", "1"]).server.tcp_port,
        12000
    );
    assert_eq!(
        run(&["-p", "1", "-l", "127.0.0.1:12000"]).server.tcp_port,
        12000
    );
    let c = run(&["-l", "[::1]:12001"]).server;
    assert_eq!((c.listen.clone(), c.tcp_port), (vec![ip("::1")], 12001));
    assert_eq!(run(&["-l", "[::1]"]).server.listen, vec![ip("::1")]);
    assert_eq!(run(&["-l", "127.0.0.1:5,127.0.0.2:5"]).server.tcp_port, 5);
    assert_error(&["-l", "127.0.0.1:5,127.0.0.2:6"], &["one TCP port"]);
    for bad in [
        "1.2.3.999",
        "example",
        "",
        "127.0.0.1:99999",
        "127.0.0.1:x",
        "[::1",
        "::1]:5",
        "127.0.0.1,",
    ] {
        assert_error(&["-l", bad], &["-l", "not an IP address"]);
    }
}

#[test]
fn memory_limit() {
    assert_eq!(run(&["-m", "1024"]).server.memory_limit, 1024 * MIB);
    assert_eq!(run(&["-m", "512m"]).server.memory_limit, 512 * MIB);
    assert_eq!(run(&["-m", "512M"]).server.memory_limit, 512 * MIB);
    assert_eq!(run(&["-m", "2g"]).server.memory_limit, 2048 * MIB);
    assert_eq!(run(&["-m", "4096k"]).server.memory_limit, 4 * MIB);
    assert_eq!(run(&["-m", "2"]).server.memory_limit, 2 * MIB);
    assert_error(&["-m", "0"], &["-m 0", "at least 1"]);
    assert_error(&["-m", "-5"], &["-m -5", "whole number of megabytes"]);
    assert_error(&["-m", "lots"], &["-m lots", "whole number of megabytes"]);
    assert_error(&["-m", "64x"], &["-m 64x", "suffix"]);
    assert_error(
        &["-m", "99999999999999999999"],
        &["-m 99999999999999999999"],
    );
    // memcached: the item size limit (default 1 MiB) must fit twice into memory.
    assert_error(
        &["-m", "1"],
        &["item size", "half the memory limit", "-m 1"],
    );
}

#[test]
fn item_size_limit() {
    // The memcached test suite's cases.
    assert_error(&["-I", "1000"], &["-I 1000", "at least 1024"]);
    assert_error(&["-I", "256m"], &["-I 256m", "half the memory limit"]);
    assert_eq!(
        run(&["-I", "1024", "-o", "slab_chunk_max=1"])
            .server
            .item_size_max,
        1024
    );
    assert_eq!(run(&["-I", "2097152"]).server.item_size_max, 2097152);
    assert_eq!(run(&["-I", "512k"]).server.item_size_max, 524288);
    assert_eq!(
        run(&["-m", "256", "-I", "32m"]).server.item_size_max,
        32 * MIB
    );
    // Order does not matter: -I is checked against the final -m.
    assert_eq!(
        run(&["-I", "32m", "-m", "256"]).server.item_size_max,
        32 * MIB
    );
    // Suffixes.
    assert_eq!(run(&["-I", "1K"]).server.item_size_max, 1024);
    assert_eq!(run(&["-I", "2M"]).server.item_size_max, 2 * MIB);
    assert_eq!(
        run(&["-m", "4096", "-I", "1g"]).server.item_size_max,
        1024 * MIB
    );
    // Exactly half is fine, one byte more is not.
    assert_eq!(run(&["-I", "32m"]).server.item_size_max, 32 * MIB);
    assert_error(&["-I", "33554433"], &["half the memory limit", "33554432"]);
    assert_error(
        &["-m", "8192", "-I", "2g"],
        &["-I 2g", "at most 1 gigabyte"],
    );
    assert_error(&["-I", "99999999999999999999k"], &["-I"]);
    assert_error(&["-I", "big"], &["-I big", "number of bytes"]);
    assert_error(&["-I", "1t"], &["-I 1t", "suffix"]);
    assert_error(&["-I", "-1"], &["-I -1"]);
}

#[test]
fn counts() {
    assert_error(
        &["-t", "0"],
        &["-t 0", "the number of threads must be at least 1"],
    );
    assert_error(&["-t", "-2"], &["-t -2", "at least 1"]);
    assert_error(
        &["-t", "four"],
        &["-t four", "number of threads", "whole number"],
    );
    assert_eq!(run(&["-t", "256"]).server.threads, 256);
    assert_eq!(run(&["-t", "1000"]).server.threads, 256, "capped");
    assert_error(&["-c", "0"], &["-c 0", "connection limit", "at least 1"]);
    assert_error(&["-c", "-1"], &["-c -1", "at least 1"]);
    assert_error(&["-c", "x"], &["-c x", "whole number"]);
    assert_error(&["-R", "0"], &["-R 0", "at least 1"]);
    assert_error(&["-b", "0"], &["-b 0", "backlog", "at least 1"]);
    assert_error(&["-b", "99999999999"], &["-b 99999999999", "too large"]);
    assert_error(&["-n", "0"], &["-n 0", "at least 1"]);
}

#[test]
fn protocol() {
    assert_eq!(run(&["-B", "auto"]).server.protocol, BindingProtocol::Auto);
    assert_eq!(
        run(&["-B", "ascii"]).server.protocol,
        BindingProtocol::Ascii
    );
    assert_eq!(
        run(&["-B", "binary"]).server.protocol,
        BindingProtocol::Binary
    );
    assert_error(&["-B", "http"], &["-B http", "auto, ascii or binary"]);
}

#[test]
fn unix_socket_and_mask() {
    let c = run(&["-s", "/tmp/m.sock", "-a", "0777"]).server;
    assert_eq!(c.unix_socket, Some(PathBuf::from("/tmp/m.sock")));
    assert_eq!(c.unix_mask, 0o777);
    assert_eq!(run(&["-a", "0"]).server.unix_mask, 0);
    assert_error(&["-a", "999"], &["-a 999", "octal"]);
    assert_error(&["-a", "1777"], &["-a 1777", "octal"]);
    assert_error(&["-s", ""], &["-s", "non-empty"]);
}

#[test]
fn auth_file() {
    assert_error(
        &["-Y", "/nonexistent/memha-auth"],
        &["-Y", "/nonexistent/memha-auth", "cannot read the auth file"],
    );
    let dir = std::env::temp_dir();
    let dir_s = dir.to_str().unwrap();
    assert_error(&["-Y", dir_s], &["not a regular file"]);
}

#[test]
fn extended_options() {
    let c = run(&[
        "-o",
        "idle_timeout=600,modern,slab_chunk_max=16,no_lru_crawler",
        "-o",
        "hashpower=20",
        "-o",
        "relaxed_privileges,,some_future_option=x",
    ])
    .server;
    assert_eq!(c.idle_timeout, 600);
    assert_eq!(
        c.ignored_options,
        vec![
            "modern",
            "slab_chunk_max=16",
            "no_lru_crawler",
            "hashpower=20",
            "relaxed_privileges",
            "some_future_option=x"
        ]
    );
    for o in [
        "no_modern",
        "lru_crawler",
        "no_lru_maintainer",
        "lru_maintainer",
        "temporary_ttl=10",
        "watcher_logbuf_size=1",
        "read_buf_mem_limit=1",
        "maxconns_fast",
        "track_sizes",
    ] {
        assert_eq!(run(&["-o", o]).server.ignored_options, vec![o]);
    }
    assert_eq!(run(&["-o", "idle_timeout=0"]).server.idle_timeout, 0);
    assert_error(
        &["-o", "idle_timeout=abc"],
        &["idle_timeout=abc", "whole number of seconds"],
    );
    assert_error(
        &["-o", "idle_timeout=-1"],
        &["idle_timeout=-1", "whole number"],
    );
    assert_error(&["-o", "idle_timeout"], &["idle_timeout", "whole number"]);
    assert_error(&["-o"], &["-o", "requires a value"]);
}

#[test]
fn replication_flags() {
    let o = run(&["-x", "10.0.0.1", "-x", "peer.example", "-X", "11300"]);
    assert_eq!(o.repl_peers, vec!["10.0.0.1", "peer.example"]);
    assert_eq!(o.repl_port, Some(11300));
    assert_error(&["-X", "0"], &["-X 0", "replication port"]);
    assert_error(&["-X", "abc"], &["-X abc", "replication port"]);
    assert_error(&["-x"], &["-x", "requires a value"]);
}

#[test]
fn accepted_without_effect() {
    let o = run(&["-L", "-f", "1.25", "-n", "48", "-D", "#"]);
    assert_eq!(o.ignored_flags, vec!["-L", "-f 1.25", "-n 48", "-D #"]);
    assert_error(&["-f", "1"], &["-f 1", "greater than 1"]);
    assert_error(&["-f", "x"], &["-f x", "greater than 1"]);
}

#[test]
fn unsupported_and_unknown() {
    assert_eq!(
        error(&["-S"]),
        "SASL is not supported by memha; use -Y for ASCII auth"
    );
    assert_eq!(
        error(&["--enable-sasl"]),
        "SASL is not supported by memha; use -Y for ASCII auth"
    );
    assert_error(&["-e", "/tmp/mem"], &["-e", "not supported"]);
    assert_eq!(error(&["-Z"]), "unknown option -Z; see memha -h");
    assert_eq!(error(&["-dZ"]), "unknown option -Z; see memha -h");
    assert_error(&["--enable-ssl"], &["unknown option --enable-ssl"]);
}

#[test]
fn positional_arguments() {
    assert_error(&["extra"], &["unexpected argument \"extra\""]);
    assert_error(&["-p", "1", "extra"], &["extra"]);
    assert_error(&["-"], &["unexpected argument \"-\""]);
    assert_error(&["--", "extra"], &["extra"]);
    assert_eq!(run(&["-p", "5", "--"]).server.tcp_port, 5);
}

#[test]
fn user_and_pid_file() {
    let o = run(&["-u", "root", "-P", "/run/memha.pid", "-d"]);
    assert_eq!(o.user.as_deref(), Some("root"));
    assert_eq!(o.pid_file, Some(PathBuf::from("/run/memha.pid")));
    assert!(o.daemonize);
    assert_error(&["-u", ""], &["-u", "non-empty"]);
    assert_error(&["-P", ""], &["-P", "non-empty"]);
}
