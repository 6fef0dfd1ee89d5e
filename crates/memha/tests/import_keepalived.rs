//! `memha import-keepalived`: keepalived.conf → memha's `[[vrrp_instance]]` TOML
//! (`memha::import_keepalived`). Fixtures are in `tests/fixtures/keepalived/`: the seed's two
//! nodes (T1: `state MASTER`, priority 100; T2: `state BACKUP`, priority 90; VRID 51, VIP
//! 192.168.68.46 on br0, PASS "memcached", the `chk_memcached` script and four notify
//! scripts) and a file full of what memha does not carry over (with an `include`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use memha::cli::{parse_args, Cli};
use memha::config_file::{self, parse_str, VirtualIp, VrrpInstance, VrrpState};
use memha::import_keepalived::{translate_file, translate_str, ImportError, Translation};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keepalived")
        .join(name)
}

/// A fresh temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "memha-import-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn memha(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memha"))
        .args(args)
        .output()
        .expect("run memha")
}

fn translate(path: &Path) -> Translation {
    translate_file(path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
}

/// The translation read back by memha's own config reader.
fn instances(t: &Translation) -> Vec<VrrpInstance> {
    parse_str("out.toml", &t.toml)
        .unwrap_or_else(|e| panic!("{}\n-> {e}", t.toml))
        .vrrp_instances
}

/// `(line, start of the statement)` of every note about `file_suffix`.
fn noted(t: &Translation, file_suffix: &str) -> Vec<(usize, String)> {
    t.notes
        .iter()
        .filter(|n| n.file.ends_with(file_suffix))
        .map(|n| (n.line, n.text.split(' ').next().unwrap_or("").to_string()))
        .collect()
}

fn note_for(t: &Translation, line: usize) -> &str {
    t.notes
        .iter()
        .find(|n| n.line == line)
        .map(|n| n.reason.as_str())
        .unwrap_or_else(|| panic!("no note for line {line}: {:#?}", t.notes))
}

/// The translation written to a file passes the real binary's `check-config`.
fn passes_check_config(toml: &str) {
    let dir = TempDir::new();
    let path = dir.write("vrrp.toml", toml);
    let out = memha(&["check-config", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "check-config failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        toml
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: ok\n", path.display())
    );
}

fn seed_instance(state: VrrpState, priority: u8, nopreempt: bool) -> VrrpInstance {
    VrrpInstance {
        name: "VI_1".into(),
        interface: "br0".into(),
        state,
        virtual_router_id: 51,
        priority,
        advert_int: 1.0,
        version: 2,
        nopreempt,
        hold_unreplicated: true,
        preempt_delay: 0.0,
        auth_pass: Some("memcache".into()),
        virtual_ipaddress: vec![VirtualIp {
            addr: "192.168.68.46".parse().unwrap(),
            prefix: None,
        }],
        unicast_src_ip: None,
        unicast_peer: vec![],
        track_interface: vec![],
        track_script: vec![],
        use_vmac: false,
        notify_master: Some("/etc/keepalived/scripts/memcached_master.sh".into()),
        notify_backup: Some("/etc/keepalived/scripts/memcached_backup.sh".into()),
        notify_fault: Some("/etc/keepalived/scripts/memcached_fault.sh".into()),
        notify_stop: Some("/etc/keepalived/scripts/memcached_stop.sh".into()),
        notify: None,
    }
}

#[test]
fn seed_t1() {
    let t = translate(&fixture("seed_T1.conf"));
    assert_eq!(t.instances, 1);
    // keepalived clears nopreempt under state MASTER: T1 preempts, and so does the translation.
    assert_eq!(
        instances(&t),
        [seed_instance(VrrpState::Master, 100, false)]
    );
    assert_eq!(
        noted(&t, "seed_T1.conf"),
        [
            (5, "router_id".to_string()),
            (8, "vrrp_script".to_string()),
            (19, "nopreempt".to_string()),
            (22, "auth_pass".to_string()),
            (27, "track_script".to_string()),
        ]
    );
    assert!(note_for(&t, 8)
        .starts_with("not carried over: memha's VRRP speaker follows the cache's own health"));
    assert!(note_for(&t, 27).starts_with("not carried over"));
    assert!(note_for(&t, 19).contains("nopreempt will not work with initial state MASTER"));
    assert!(
        note_for(&t, 22).contains("\"memcache\""),
        "{}",
        note_for(&t, 22)
    );
    let block = &t.notes[1];
    assert_eq!(
        (block.line, block.end_line),
        (8, 11),
        "a block note spans its lines"
    );
    // The notes head the output too, and each key names its keepalived line.
    assert!(t.toml.contains("#   "), "{}", t.toml);
    assert!(t
        .toml
        .lines()
        .any(|l| l.starts_with("#   ") && l.contains("seed_T1.conf:8-11: `vrrp_script")));
    assert!(t.toml.contains("# nopreempt = true"));
    assert!(t
        .toml
        .lines()
        .any(|l| l.starts_with("virtual_router_id = 51") && l.ends_with("# line 16")));
    passes_check_config(&t.toml);
}

#[test]
fn seed_t2() {
    let t = translate(&fixture("seed_T2.conf"));
    assert_eq!(instances(&t), [seed_instance(VrrpState::Backup, 90, true)]);
    assert_eq!(
        noted(&t, "seed_T2.conf"),
        [
            (5, "router_id".to_string()),
            (8, "vrrp_script".to_string()),
            (22, "auth_pass".to_string()),
            (27, "track_script".to_string()),
        ]
    );
    passes_check_config(&t.toml);
}

/// deploy/memha.toml is the seed written by hand; the importer agrees with it on everything
/// but the choices the example made on purpose (both nodes BACKUP + nopreempt, priority).
#[test]
fn seed_matches_the_deploy_example() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/memha.toml");
    let example = config_file::load(&deploy).expect("deploy/memha.toml passes check-config");
    let want = &example.vrrp_instances[0];
    let mut got = instances(&translate(&fixture("seed_T2.conf"))).remove(0);
    got.priority = want.priority;
    assert_eq!(&got, want);
}

#[test]
fn unknown_constructs_are_listed_line_by_line() {
    let t = translate(&fixture("unknown_constructs.conf"));
    assert_eq!(t.instances, 2, "one from the file, one from the include");
    let lines: Vec<usize> = noted(&t, "unknown_constructs.conf")
        .iter()
        .map(|(l, _)| *l)
        .collect();
    assert_eq!(
        lines,
        [
            3, 6, 7, 8, 9, 10, 11, 12, 16, 23, 35, 36, 39, 40, 42, 43, 45, 47, 50, 53, 58, 60, 63,
            64, 68
        ]
    );
    assert_eq!(
        noted(&t, "vi_cache6.conf"),
        [
            (6, "authentication".to_string()),
            (12, "fd00::12".to_string()),
            (16, "fd00::5/64".to_string()),
        ]
    );
    for (line, words) in [
        (16, "not carried over"),
        (60, "not carried over"),
        (39, "no e-mail"),
        (40, "gratuitous ARP"),
        (35, "254"),
        (36, "rounds 0.5 to 1"),
        (45, "\"a long p\""),
        (47, "dev eth1, label eth1:vip"),
        (58, "weight"),
        (63, "not a vrrp_instance keyword"),
        (64, "user and group"),
        (68, "LVS"),
    ] {
        assert!(
            note_for(&t, line).contains(words),
            "line {line}: {:?} lacks {words:?}",
            note_for(&t, line)
        );
    }
    let got = instances(&t);
    let a = &got[0];
    assert_eq!(a.name, "VI_CACHE");
    assert_eq!((a.priority, a.advert_int, a.version), (254, 1.0, 2));
    assert!(a.nopreempt);
    assert_eq!(a.preempt_delay, 10.0);
    assert_eq!(a.auth_pass.as_deref(), Some("a long p"));
    assert_eq!(
        a.virtual_ipaddress
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>(),
        ["10.0.0.5/24", "10.0.0.6"]
    );
    assert_eq!(a.track_interface, ["eth0", "eth1"]);
    assert!(
        a.unicast_src_ip.is_none(),
        "mcast_src_ip is not carried over"
    );
    assert_eq!(a.notify.as_deref(), Some("/etc/keepalived/notify.sh cache"));
    assert_eq!(
        a.notify_master.as_deref(),
        Some("/etc/keepalived/master.sh")
    );
    let b = &got[1];
    assert_eq!(b.name, "VI_CACHE6");
    assert_eq!((b.version, b.advert_int), (3, 0.1));
    assert!(
        b.auth_pass.is_none(),
        "VRRPv3: keepalived ignores authentication"
    );
    assert_eq!(b.unicast_src_ip, Some("fd00::11".parse().unwrap()));
    assert_eq!(b.unicast_peer.len(), 2);
    passes_check_config(&t.toml);
}

#[test]
fn binary_output_passes_check_config() {
    for name in ["seed_T1.conf", "seed_T2.conf", "unknown_constructs.conf"] {
        let path = fixture(name);
        let out = memha(&["import-keepalived", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        let toml = String::from_utf8(out.stdout).unwrap();
        assert!(toml.contains("[[vrrp_instance]]"), "{name}: {toml}");
        passes_check_config(&toml);
        // stderr: one FILE:LINE line per note, then a summary.
        let t = translate(&path);
        for n in &t.notes {
            assert!(
                stderr.contains(&n.to_string()),
                "{name}: {n} not on stderr:\n{stderr}"
            );
        }
        assert!(
            stderr.contains(&format!("{} line(s) not translated", t.notes.len())),
            "{stderr}"
        );
    }
    let out = memha(&[
        "import-keepalived",
        fixture("seed_T1.conf").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("seed_T1.conf:8-11: `vrrp_script chk_memcached { … }`: not carried over"),
        "{stderr}"
    );
}

#[test]
fn command_line() {
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(matches!(
        parse_args(&args(&["import-keepalived", "/etc/keepalived/keepalived.conf"])),
        Ok(Cli::ImportKeepalived(p)) if p == Path::new("/etc/keepalived/keepalived.conf")
    ));
    for bad in [
        &["import-keepalived"][..],
        &["import-keepalived", "a", "b"],
        &["import-keepalived", "-p"],
    ] {
        assert!(parse_args(&args(bad)).is_err(), "{bad:?}");
    }
    let out = memha(&["import-keepalived", "/nonexistent/keepalived.conf"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/keepalived.conf: cannot read the file"),
        "{stderr}"
    );
}

fn errors(text: &str) -> Vec<ImportError> {
    match translate_str("k.conf", text) {
        Ok(t) => panic!("expected an error for:\n{text}\n-> {}", t.toml),
        Err(e) => e,
    }
}

fn ok(text: &str) -> Translation {
    translate_str("k.conf", text).unwrap_or_else(|e| panic!("{text}\n-> {e:?}"))
}

const MINIMAL: &str = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 7\n \
                       virtual_ipaddress {\n  10.0.0.1\n }\n}\n";

#[test]
fn errors_name_the_line() {
    let e = errors("vrrp_instance VI_1 {\n  interface eth0\n");
    assert_eq!((e[0].line, e.len()), (1, 1));
    assert!(e[0].to_string().starts_with("k.conf:1: "), "{}", e[0]);
    assert!(e[0].message.contains("never closed"));

    let e = errors("global_defs {\n}\n}\n");
    assert_eq!(e[0].line, 3);
    assert!(e[0].message.contains("closes no block"));

    let e = errors("vrrp_instance VI_1 {\n notify_master \"/x.sh\n}\n");
    assert_eq!(e[0].line, 2);
    assert!(e[0].message.contains("quote"));

    // Several problems: all of them, each at its line.
    let e = errors(
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 300\n priority 0\n \
         state SLAVE\n advert_int fast\n virtual_ipaddress {\n  10.0.0.1\n  vip.example\n }\n}\n",
    );
    let lines: Vec<usize> = e.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 4, 5, 6, 9], "{e:#?}");

    let e =
        errors("vrrp_instance VI_1 {\n interface eth0\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n");
    assert!(e[0].message.contains("no virtual_router_id"), "{e:?}");
    let e = errors(
        "vrrp_instance VI_1 {\n virtual_router_id 1\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n",
    );
    assert!(e[0].message.contains("no interface"), "{e:?}");
    let e = errors("vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n}\n");
    assert!(e[0].message.contains("no virtual_ipaddress"), "{e:?}");

    // keepalived parameters are not expanded: an error, not a wrong value.
    let e = errors(&MINIMAL.replace("virtual_router_id 7", "virtual_router_id $VRID"));
    assert_eq!(e[0].line, 3);
    assert!(e[0].message.contains("$VRID"), "{e:?}");

    // What memha itself refuses is refused here, with the reason from check-config.
    let e = errors(&MINIMAL.replace("10.0.0.1", "10.0.0.1\n  10.0.0.1"));
    assert!(e[0].message.contains("listed twice"), "{e:?}");
}

#[test]
fn syntax_variants() {
    // `{` on its own line, one-line blocks, both comment characters, quotes around `#`.
    let t = ok(
        "! header\nvrrp_instance VI_1\n{\n  interface eth0 # the LAN\n  \
                virtual_router_id 7 ! seven\n  virtual_ipaddress { 10.0.0.1 10.0.0.2/24 }\n  \
                authentication { auth_type PASS auth_pass 'pa#ss' }\n  \
                notify \"/usr/local/bin/notify.sh --tag=#cache\"\n  preempt\n}\n",
    );
    assert!(t.notes.is_empty(), "{:#?}", t.notes);
    let i = &instances(&t)[0];
    assert_eq!(i.virtual_ipaddress.len(), 2);
    assert_eq!(i.auth_pass.as_deref(), Some("pa#ss"));
    assert_eq!(
        i.notify.as_deref(),
        Some("/usr/local/bin/notify.sh --tag=#cache")
    );
    assert!(!i.nopreempt);
    assert!(t.toml.contains("Every line was translated."));

    // The global version applies; v3 takes fractional adverts as they are.
    let t = ok(&format!(
        "global_defs {{\n vrrp_version 3\n}}\n{}",
        MINIMAL.replace("interface eth0", "interface eth0\n advert_int 0.25")
    ));
    let i = &instances(&t)[0];
    assert_eq!((i.version, i.advert_int), (3, 0.25));

    // A keyword given twice: keepalived takes the last; the first is noted.
    let t = ok(&MINIMAL.replace(
        "interface eth0",
        "priority 50\n priority 60\n interface eth0",
    ));
    assert_eq!(instances(&t)[0].priority, 60);
    assert_eq!(t.notes.len(), 1);
    assert_eq!(t.notes[0].line, 2);
    assert!(t.notes[0].reason.contains("line 3"));

    // No vrrp_instance at all: a valid (empty) file, said so.
    let t = ok("global_defs {\n router_id X\n}\n");
    assert_eq!(t.instances, 0);
    assert!(t.toml.contains("No vrrp_instance"));
    passes_check_config(&t.toml);

    // State MASTER + nopreempt: left out, as keepalived does, and written as a comment.
    let t = ok(&MINIMAL.replace(
        "interface eth0",
        "state MASTER\n nopreempt\n interface eth0",
    ));
    let i = &instances(&t)[0];
    assert_eq!((i.state, i.nopreempt), (VrrpState::Master, false));
}

#[test]
fn includes() {
    let dir = TempDir::new();
    dir.write(
        "keepalived.conf",
        "include conf.d/*.conf\ninclude missing/*.conf\ninclude ./scripts.conf\n",
    );
    dir.write(
        "conf.d/b.conf",
        &MINIMAL.replace("VI_1", "VI_B").replace("7", "8"),
    );
    dir.write("conf.d/a.conf", MINIMAL);
    dir.write("conf.d/a.conf.bak", "this is not keepalived syntax {");
    dir.write(
        "scripts.conf",
        "vrrp_script chk {\n script \"/bin/true\"\n}\n",
    );
    let t = translate(&dir.0.join("keepalived.conf"));
    let names: Vec<String> = instances(&t).into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["VI_1", "VI_B"], "sorted, as glob() sorts");
    let lines: Vec<(String, usize)> = t
        .notes
        .iter()
        .map(|n| {
            (
                Path::new(&n.file)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                n.line,
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("keepalived.conf".to_string(), 2),
            ("scripts.conf".to_string(), 1)
        ]
    );
    assert!(t.notes[0].reason.contains("no file matches"));
    // Keys from an included file name it.
    assert!(t.toml.contains("a.conf:3"), "{}", t.toml);

    // An include loop stops with an error instead of recursing forever.
    let dir = TempDir::new();
    let p = dir.write("loop.conf", "include loop.conf\n");
    let e = translate_file(&p).unwrap_err();
    assert!(e[0].message.contains("nest deeper"), "{e:?}");
}
