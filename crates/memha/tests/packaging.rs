//! The packaging files under deploy/ against the binary: the man page documents every flag
//! of `memha -h`, the systemd unit and the Debian package metadata agree with each other, and
//! the config the package installs starts as is. (scripts/package-test.sh builds and installs
//! the real package.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn memha(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_memha"))
        .args(args)
        .output()
        .expect("run memha")
}

/// The flags `memha -h` lists: `-p`, `--port`, `--config`, `-x`, ...
fn help_flags() -> Vec<String> {
    let help = String::from_utf8(memha(&["-h"]).stdout).unwrap();
    let mut flags = Vec::new();
    for line in help.lines() {
        if line.is_empty() && !flags.is_empty() {
            break; // the flag table ends at the first blank line after it
        }
        if !(line.starts_with('-') || line.starts_with("    --")) {
            continue;
        }
        let column = line.trim_start().split("  ").next().unwrap();
        for item in column.split(", ") {
            let flag = item.split(['=', ' ']).next().unwrap();
            flags.push(flag.to_string());
        }
    }
    flags
}

/// The man page as plain text: `\-` is `-`, font changes dropped.
fn man_text() -> String {
    let mut s = read("deploy/memha.1").replace("\\-", "-");
    for font in ["\\fB", "\\fI", "\\fR", "\\fP"] {
        s = s.replace(font, "");
    }
    s
}

/// Whether `flag` occurs in `text` as a whole word (`-p` is not found in `-pid`).
fn has_flag(text: &str, flag: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '-';
    text.match_indices(flag).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + flag.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

#[test]
fn the_help_lists_flags() {
    let flags = help_flags();
    for f in [
        "--config",
        "-p",
        "--port",
        "-x",
        "-X",
        "--repl-ack",
        "-o",
        "--extended",
    ] {
        assert!(flags.iter().any(|x| x == f), "{f} not found in {flags:?}");
    }
}

#[test]
fn the_man_page_documents_every_flag_of_the_help() {
    let man = man_text();
    let missing: Vec<_> = help_flags()
        .into_iter()
        .filter(|f| !has_flag(&man, f))
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/memha.1 does not mention {missing:?} (listed by memha -h)"
    );
}

#[test]
fn the_man_page_documents_no_flag_the_help_lacks() {
    let help = help_flags();
    let man = man_text();
    let mut in_options = false;
    let mut lines = man.lines();
    let mut stale = Vec::new();
    while let Some(line) = lines.next() {
        if line.starts_with(".SH") {
            in_options = line == ".SH OPTIONS";
        }
        if in_options && line == ".TP" {
            let tag = lines.next().unwrap_or("");
            for token in tag.split_whitespace().filter(|t| t.starts_with('-')) {
                let flag = token.split('=').next().unwrap();
                if !help.iter().any(|h| h == flag) {
                    stale.push(flag.to_string());
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "deploy/memha.1 documents {stale:?}, which memha -h does not list"
    );
}

#[test]
fn the_man_page_documents_the_subcommands_and_files() {
    let man = man_text();
    for word in [
        "check-config",
        "print-config",
        "status",
        "SIGHUP",
        "NOTIFY_SOCKET",
        "/etc/memha/memha.toml",
    ] {
        assert!(man.contains(word), "deploy/memha.1 does not mention {word}");
    }
    let help = String::from_utf8(memha(&["-h"]).stdout).unwrap();
    for line in help.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("memha ") {
            let sub = rest.split_whitespace().next().unwrap();
            if sub.starts_with(|c: char| c.is_ascii_lowercase()) {
                assert!(man.contains(&format!("B memha {sub}")), "subcommand {sub}");
            }
        }
    }
}

/// `Key=value` lines of the unit's `[Service]` section.
fn unit_service() -> Vec<(String, String)> {
    let unit = read("deploy/memha.service");
    let mut section = "";
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]" && !line.starts_with('#') {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.to_string(), v.to_string()));
            }
        }
    }
    out
}

fn unit_value(key: &str) -> String {
    unit_service()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("deploy/memha.service has no {key}="))
}

#[test]
fn the_unit_starts_the_packaged_binary_with_the_packaged_config() {
    assert_eq!(unit_value("Type"), "notify");
    assert_eq!(
        unit_value("ExecStart"),
        "/usr/bin/memha --config /etc/memha/memha.toml"
    );
    assert!(unit_value("ExecReload").contains("-HUP $MAINPID"));
    assert_eq!(unit_value("Restart"), "on-failure");
    for key in [
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "LimitNOFILE",
    ] {
        unit_value(key);
    }
    assert_eq!(unit_value("ProtectSystem"), "strict");
    let caps = unit_value("CapabilityBoundingSet");
    assert_eq!(caps, "CAP_NET_ADMIN CAP_NET_RAW");
    assert_eq!(unit_value("AmbientCapabilities"), caps);
    // The user the unit runs as is the one the package creates.
    let user = unit_value("User");
    let postinst = read("deploy/debian/postinst");
    assert!(postinst.contains("adduser --system --group"));
    assert!(postinst
        .lines()
        .any(|l| l.trim_end().ends_with(&format!(" {user}"))));
    assert!(postinst.contains("#DEBHELPER#"));
}

#[test]
fn the_package_metadata_installs_what_the_unit_and_the_man_page_name() {
    let manifest: toml::Table = read("crates/memha/Cargo.toml").parse().unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let mut targets = Vec::new();
    for asset in deb["assets"].as_array().unwrap() {
        let a = asset.as_array().unwrap();
        let (src, dst) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
        if !src.starts_with("target/") {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(src);
            assert!(path.exists(), "asset {src} does not exist");
        }
        let dst = if dst.ends_with('/') {
            format!(
                "/{dst}{}",
                Path::new(src).file_name().unwrap().to_str().unwrap()
            )
        } else {
            format!("/{dst}")
        };
        targets.push((src.to_string(), dst));
    }
    let installed = |dst: &str| {
        targets
            .iter()
            .find(|(_, d)| d == dst)
            .map(|(s, _)| s.clone())
            .unwrap_or_else(|| panic!("nothing is installed as {dst}: {targets:?}"))
    };
    assert_eq!(installed("/usr/bin/memha"), "target/release/memha");
    assert_eq!(
        installed("/etc/memha/memha.toml"),
        "../../deploy/memha-single.toml"
    );
    assert_eq!(
        installed("/usr/share/man/man1/memha.1"),
        "../../deploy/memha.1"
    );
    installed("/usr/share/doc/memha/memha-two-node.toml");
    // Every file the man page's FILES section names under /usr/share/doc is packaged.
    let man = man_text();
    for line in man.lines().filter(|l| l.starts_with(".I /usr/share/doc/")) {
        installed(line.trim_start_matches(".I ").trim());
    }
    assert_eq!(
        deb["conf-files"].as_array().unwrap()[0].as_str(),
        Some("/etc/memha/memha.toml")
    );
    let units = &deb["systemd-units"];
    assert_eq!(units["unit-name"].as_str(), Some("memha"));
    let unit_dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(units["unit-scripts"].as_str().unwrap());
    assert!(unit_dir.join("memha.service").exists());
    let scripts =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(deb["maintainer-scripts"].as_str().unwrap());
    assert!(scripts.join("postinst").exists());
}

#[test]
fn the_packaged_config_is_valid_and_single_node() {
    let path = root().join("deploy/memha-single.toml");
    let out = memha(&["check-config", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = read("deploy/memha-single.toml");
    let table: toml::Table = text.parse().unwrap();
    assert!(!table.contains_key("vrrp_instance"), "VRRP cannot run yet");
    assert!(!table.contains_key("replication"), "a single node");
    // The two-node example still checks too.
    let two = root().join("deploy/memha.toml");
    let out = memha(&["check-config", two.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_packaged_config_starts_as_is() {
    let dir = std::env::temp_dir().join(format!("memha-packaging-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port_file = dir.join("ports");
    let config = root().join("deploy/memha-single.toml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_memha"));
    // Only the port is overridden (11211 may be taken on a test machine).
    cmd.args(["--config", config.to_str().unwrap(), "-p", "0"]);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.args(["-u", "root"]);
    }
    let mut child = cmd
        .env("MEMCACHED_PORT_FILENAME", &port_file)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let started = loop {
        if std::fs::read_to_string(&port_file).is_ok_and(|t| t.starts_with("TCP")) {
            break true;
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        started,
        "memha --config deploy/memha-single.toml did not start"
    );
}
