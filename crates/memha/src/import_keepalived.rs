//! `memha import-keepalived FILE`: translate a `keepalived.conf` into memha's
//! `[[vrrp_instance]]` sections (docs/CONFIG.md), and say what was left behind.
//!
//! **What comes out.** The TOML goes to stdout: a header comment listing every line that was
//! not translated, then one `[[vrrp_instance]]` per keepalived `vrrp_instance`, each key
//! followed by a comment naming the keepalived line it came from. The same list of lines not
//! translated goes to stderr, one `FILE:LINE: `text`: reason` per line (`FILE:FIRST-LAST:` for
//! a whole block), so `memha import-keepalived keepalived.conf > vrrp.toml` shows it on the
//! terminal and keeps it in the file. The output is checked with memha's own config reader
//! ([`crate::config_file::parse_str`]) before it is printed: what comes out passes
//! `memha check-config`, or nothing comes out and the reason is an error.
//!
//! **Exit status.** 0 when the file was translated (even with lines left behind: those are
//! decisions for the operator, not failures); 1 when it could not be: unreadable file,
//! unbalanced braces, an instance memha cannot express (no `interface`, no
//! `virtual_router_id`, no address, a value that is not a number, …). Errors are
//! `FILE:LINE: reason`, all of them, not only the first.
//!
//! **keepalived's syntax, as read here.** Blocks are `keyword args { … }` (the `{` may also
//! stand alone on the next line, and a block may sit on one line); `#` and `!` start a
//! comment anywhere outside quotes; `"…"` and `'…'` quote (the quotes are removed, a word may
//! mix quoted and bare parts, `\"` escapes); `include PATTERN` (and `includer`, `includem`,
//! …) is followed, relative to the including file's directory, with `*`/`?`/`[…]` wildcards
//! in the file name, at any depth, up to 16 levels. keepalived's `@conditional` lines and
//! `$NAME=value` parameters are not evaluated: such lines are listed as not translated, and
//! a value that uses a `$parameter` is an error (expand it by hand).
//!
//! **What keepalived does that the text does not say**, reproduced so that the memha node
//! behaves as the keepalived node did (each with a note):
//! * `auth_pass` longer than 8 bytes: keepalived sends the first 8; so does the translation;
//! * `state MASTER` with `nopreempt`: keepalived clears `nopreempt` (and logs it); the
//!   translation leaves `nopreempt` out and says how to get what was meant;
//! * `authentication` under VRRPv3: keepalived ignores it; so does the translation;
//! * a fractional `advert_int` under VRRPv2: keepalived rounds it to whole seconds;
//! * IPv6 virtual addresses: keepalived runs the instance as VRRPv3;
//! * `priority 255` (address owner): memha's highest is 254.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// How deep `include` may nest (keepalived's own limit is similar; it stops loops).
const MAX_INCLUDE_DEPTH: usize = 16;

/// A line (or block) of keepalived.conf that was not carried over, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The file, as named on the command line or in `include`.
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// The last line of a block, or `line`.
    pub end_line: usize,
    /// The statement, as keepalived reads it (`vrrp_script chk_memcached { … }`).
    pub text: String,
    pub reason: String,
}

impl Note {
    fn place(&self) -> String {
        if self.end_line > self.line {
            format!("{}:{}-{}", self.file, self.line, self.end_line)
        } else {
            format!("{}:{}", self.file, self.line)
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}`: {}", self.place(), self.text, self.reason)
    }
}

/// Why a file could not be translated: `FILE:LINE: message` (`FILE: message` with line 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for ImportError {}

/// A translated file.
#[derive(Clone, Debug)]
pub struct Translation {
    /// The `[[vrrp_instance]]` sections, with the notes as a header comment.
    pub toml: String,
    /// Every line not translated, in file order.
    pub notes: Vec<Note>,
    /// How many `vrrp_instance` blocks were translated.
    pub instances: usize,
}

/// `memha import-keepalived FILE`: prints the TOML on stdout and the notes on stderr.
pub fn run(path: &Path) -> ExitCode {
    match translate_file(path) {
        Ok(t) => {
            for n in &t.notes {
                eprintln!("{n}");
            }
            print!("{}", t.toml);
            eprintln!(
                "memha import-keepalived: {} vrrp_instance(s) translated; {} line(s) not \
                 translated{}",
                t.instances,
                t.notes.len(),
                if t.notes.is_empty() {
                    ""
                } else {
                    " (listed above, and at the top of the output)"
                }
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "memha import-keepalived: {} not translated ({} error(s))",
                path.display(),
                errors.len()
            );
            ExitCode::FAILURE
        }
    }
}

/// Reads and translates a keepalived.conf (and what it includes).
pub fn translate_file(path: &Path) -> Result<Translation, Vec<ImportError>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ImportError {
            file: name.clone(),
            line: 0,
            message: format!("cannot read the file: {e}"),
        }]
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    translate(&name, &text, &dir)
}

/// Translates keepalived.conf text; `name` is what messages call it. An `include` with a
/// relative path is looked up from the current directory.
pub fn translate_str(name: &str, text: &str) -> Result<Translation, Vec<ImportError>> {
    translate(name, text, Path::new(""))
}

fn translate(name: &str, text: &str, dir: &Path) -> Result<Translation, Vec<ImportError>> {
    let mut reader = Reader {
        files: Vec::new(),
        notes: Vec::new(),
    };
    let tree = reader.parse(name, text, dir, 0).map_err(|e| vec![e])?;
    let mut t = Translator {
        files: &reader.files,
        notes: reader.notes.clone(),
        errors: Vec::new(),
        global_version: None,
    };
    let instances = t.top(&tree);
    if !t.errors.is_empty() {
        return Err(t.errors);
    }
    let mut notes = t.notes;
    notes.sort_by_key(|n| {
        (
            reader.files.iter().position(|f| *f == n.file).unwrap_or(0),
            n.line,
        )
    });
    let toml = render(&reader.files, &notes, &instances);
    // The promise: what comes out passes check-config.
    if let Err(e) = crate::config_file::parse_str(name, &toml) {
        let line = toml.lines().nth(e.line.saturating_sub(1)).unwrap_or("");
        return Err(vec![ImportError {
            file: name.to_string(),
            line: 0,
            message: format!(
                "the translation does not pass memha's check ({}: {}); the line is `{}`",
                e.line,
                e.message,
                line.trim()
            ),
        }]);
    }
    Ok(Translation {
        toml,
        notes,
        instances: instances.len(),
    })
}

// ---------------------------------------------------------------------------------------------
// Reading keepalived's syntax into a tree of statements.

/// One word of a statement, quotes removed.
#[derive(Clone, Debug)]
struct Word {
    text: String,
    /// Whether any part of it was quoted (keepalived: a quoted script may carry arguments).
    quoted: bool,
}

/// `keyword args…` on one line, with its `{ … }` block if it has one.
#[derive(Clone, Debug)]
struct Stmt {
    /// Index into `Reader::files`.
    file: usize,
    line: usize,
    end_line: usize,
    words: Vec<Word>,
    block: Option<Vec<Stmt>>,
}

impl Stmt {
    fn keyword(&self) -> &str {
        self.words.first().map_or("", |w| w.text.as_str())
    }

    fn args(&self) -> &[Word] {
        self.words.get(1..).unwrap_or(&[])
    }

    /// The statement as a reader would recognise it: `vrrp_script chk { … }`.
    fn text(&self) -> String {
        let mut s = self
            .words
            .iter()
            .map(|w| {
                if w.quoted {
                    format!("\"{}\"", w.text)
                } else {
                    w.text.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        if self.block.is_some() {
            s.push_str(" { … }");
        }
        s
    }

    fn children(&self) -> &[Stmt] {
        self.block.as_deref().unwrap_or(&[])
    }
}

enum Token {
    Word(Word),
    Open,
    Close,
}

/// Splits one line into words and braces, dropping comments.
fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    let mut word: Option<Word> = None;
    let flush = |word: &mut Option<Word>, out: &mut Vec<Token>| {
        if let Some(w) = word.take() {
            out.push(Token::Word(w));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' | '!' => break,
            '{' => {
                flush(&mut word, &mut out);
                out.push(Token::Open);
            }
            '}' => {
                flush(&mut word, &mut out);
                out.push(Token::Close);
            }
            '"' | '\'' => {
                let w = word.get_or_insert(Word {
                    text: String::new(),
                    quoted: true,
                });
                w.quoted = true;
                let mut closed = false;
                while let Some(q) = chars.next() {
                    if q == c {
                        closed = true;
                        break;
                    }
                    if q == '\\' {
                        if let Some(e) = chars.next() {
                            w.text.push(e);
                        }
                        continue;
                    }
                    w.text.push(q);
                }
                if !closed {
                    return Err(format!("the quote {c} is not closed on this line"));
                }
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word
                .get_or_insert(Word {
                    text: String::new(),
                    quoted: false,
                })
                .text
                .push(c),
        }
    }
    flush(&mut word, &mut out);
    Ok(out)
}

struct Reader {
    /// File names, indexed by `Stmt::file`.
    files: Vec<String>,
    /// Notes made while reading (includes that match nothing, …).
    notes: Vec<Note>,
}

/// An open `{`: the statement it belongs to and what is inside so far.
struct Frame {
    head: Option<Stmt>,
    items: Vec<Stmt>,
}

impl Reader {
    fn parse(
        &mut self,
        name: &str,
        text: &str,
        dir: &Path,
        depth: usize,
    ) -> Result<Vec<Stmt>, ImportError> {
        let file = self.files.len();
        self.files.push(name.to_string());
        let err = |line: usize, message: String| ImportError {
            file: name.to_string(),
            line,
            message,
        };
        let mut stack = vec![Frame {
            head: None,
            items: Vec::new(),
        }];
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let tokens = tokenize(raw).map_err(|m| err(line, m))?;
            let mut words: Vec<Word> = Vec::new();
            for tok in tokens {
                match tok {
                    Token::Word(w) => words.push(w),
                    Token::Open => {
                        let head = if words.is_empty() {
                            // `{` alone on its line: it opens the previous statement's block.
                            let top = stack.last_mut().expect("the file frame");
                            match top.items.pop() {
                                Some(s) if s.block.is_none() => s,
                                Some(s) => {
                                    top.items.push(s);
                                    return Err(err(line, "`{` without a keyword".to_string()));
                                }
                                None => return Err(err(line, "`{` without a keyword".to_string())),
                            }
                        } else {
                            Stmt {
                                file,
                                line,
                                end_line: line,
                                words: std::mem::take(&mut words),
                                block: None,
                            }
                        };
                        stack.push(Frame {
                            head: Some(head),
                            items: Vec::new(),
                        });
                    }
                    Token::Close => {
                        if !words.is_empty() {
                            let s = Stmt {
                                file,
                                line,
                                end_line: line,
                                words: std::mem::take(&mut words),
                                block: None,
                            };
                            self.push(&mut stack, s, dir, depth)?;
                        }
                        if stack.len() == 1 {
                            return Err(err(line, "`}` closes no block".to_string()));
                        }
                        let frame = stack.pop().expect("checked above");
                        let mut head = frame.head.expect("every inner frame has a head");
                        head.block = Some(frame.items);
                        head.end_line = line;
                        stack.last_mut().expect("the file frame").items.push(head);
                    }
                }
            }
            if !words.is_empty() {
                let s = Stmt {
                    file,
                    line,
                    end_line: line,
                    words,
                    block: None,
                };
                self.push(&mut stack, s, dir, depth)?;
            }
        }
        if stack.len() > 1 {
            let open = stack[1].head.as_ref().map_or(0, |h| h.line);
            let kw = stack[1].head.as_ref().map_or("", |h| h.keyword());
            return Err(err(
                open,
                format!("the block `{kw} {{` opened here is never closed"),
            ));
        }
        Ok(stack.pop().expect("the file frame").items)
    }

    /// Adds a statement to the innermost block, expanding `include`.
    fn push(
        &mut self,
        stack: &mut [Frame],
        s: Stmt,
        dir: &Path,
        depth: usize,
    ) -> Result<(), ImportError> {
        let kw = s.keyword();
        let is_include = matches!(
            kw,
            "include" | "includer" | "includem" | "includew" | "includeb" | "includea"
        );
        if !is_include {
            stack.last_mut().expect("the file frame").items.push(s);
            return Ok(());
        }
        let name = self.files[s.file].clone();
        let note = |reason: String| Note {
            file: name.clone(),
            line: s.line,
            end_line: s.line,
            text: s.text(),
            reason,
        };
        let Some(pattern) = s.args().first().map(|w| w.text.clone()) else {
            self.notes
                .push(note("include without a file name".to_string()));
            return Ok(());
        };
        if depth + 1 >= MAX_INCLUDE_DEPTH {
            return Err(ImportError {
                file: name,
                line: s.line,
                message: format!(
                    "includes nest deeper than {MAX_INCLUDE_DEPTH} levels (an include loop?)"
                ),
            });
        }
        let full = if Path::new(&pattern).is_absolute() {
            PathBuf::from(&pattern)
        } else {
            dir.join(&pattern)
        };
        let paths = match expand(&full) {
            Ok(p) => p,
            Err(reason) => {
                self.notes.push(note(reason));
                return Ok(());
            }
        };
        if paths.is_empty() {
            self.notes.push(note(format!(
                "no file matches {}; nothing included",
                full.display()
            )));
            return Ok(());
        }
        for path in paths {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| ImportError {
                file: name.clone(),
                line: s.line,
                message: format!("cannot read the included file {shown}: {e}"),
            })?;
            let sub_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let items = self.parse(&shown, &text, &sub_dir, depth + 1)?;
            stack
                .last_mut()
                .expect("the file frame")
                .items
                .extend(items);
        }
        Ok(())
    }
}

/// The files a pattern names: itself, or the sorted matches of wildcards in its file name.
fn expand(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let has_wild = |s: &str| s.contains(['*', '?', '[']);
    let file = pattern
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = pattern.parent().unwrap_or(Path::new(""));
    if has_wild(&parent.to_string_lossy()) || file.contains(['{', '}']) {
        return Err(format!(
            "wildcards in directory names and {{a,b}} patterns are not followed by the \
             importer; include the files one by one ({})",
            pattern.display()
        ));
    }
    if !has_wild(&file) {
        return Ok(if pattern.is_file() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let dir = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                !n.starts_with('.') && glob_match(&file, &n) && e.path().is_file()
            })
            .map(|e| parent.join(e.file_name()))
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    Ok(out)
}

/// Shell wildcard match of one file name: `*`, `?`, `[abc]`, `[a-z]`, `[!a]`.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, length including the closing ']').
        let mut i = 0;
        let negate = matches!(p.first(), Some('!') | Some('^'));
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        while i < p.len() && (first || p[i] != ']') {
            first = false;
            if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                if p[i] <= c && c <= p[i + 2] {
                    matched = true;
                }
                i += 3;
            } else {
                if p[i] == c {
                    matched = true;
                }
                i += 1;
            }
        }
        (i < p.len()).then_some((matched != negate, i + 1))
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => match (n.first(), class(&p[1..], *n.first().unwrap_or(&'\0'))) {
                (Some(_), Some((true, len))) => go(&p[1 + len..], &n[1..]),
                (Some(c), None) => *c == '[' && go(&p[1..], &n[1..]),
                _ => false,
            },
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    go(&p, &n)
}

// ---------------------------------------------------------------------------------------------
// From statements to memha's keys.

/// Where a value came from.
#[derive(Clone, Copy, Debug)]
struct Src {
    file: usize,
    line: usize,
}

/// The "key" of a comment line in [`Instance::keys`].
const COMMENT: &str = "#";

/// One translated instance: `(key, TOML value, origin)` in memha's key order.
struct Instance {
    name: String,
    src: Src,
    /// `(key, TOML value, origin)`; a key of [`COMMENT`] is a comment line written as is.
    keys: Vec<(&'static str, String, Src)>,
}

struct Translator<'a> {
    files: &'a [String],
    notes: Vec<Note>,
    errors: Vec<ImportError>,
    /// `global_defs { vrrp_version N }`.
    global_version: Option<(u8, Src)>,
}

/// Why a global_defs keyword has no memha key.
fn global_reason(kw: &str) -> String {
    let r = match kw {
        "router_id" => {
            "memha has no router id (keepalived uses it in its logs and alert e-mails only)"
        }
        "notification_email"
        | "notification_email_from"
        | "smtp_server"
        | "smtp_helo_name"
        | "smtp_connect_timeout"
        | "smtp_alert"
        | "smtp_alert_vrrp"
        | "smtp_alert_checker"
        | "no_email_faults"
        | "email_faults" => "memha sends no e-mail; a notify script can (it gets the same events)",
        "enable_script_security" | "script_user" => {
            "memha has no script user setting: its notify scripts take no user or group"
        }
        "vrrp_strict" => "memha has no strict mode",
        "vrrp_mcast_group4" | "vrrp_mcast_group6" => {
            "memha uses the standard VRRP groups 224.0.0.18 and ff02::12"
        }
        "vrrp_higher_prio_send_advert" => {
            "no setting in memha: its speaker is designed to send a last advert whenever it \
             yields, so the new master re-announces the address"
        }
        "vrrp_skip_check_adv_addr"
        | "vrrp_check_unicast_src"
        | "vrrp_iptables"
        | "vrrp_ipsets"
        | "vrrp_priority"
        | "vrrp_no_swap"
        | "vrrp_rt_priority"
        | "vrrp_rlimit_rtime"
        | "checker_priority"
        | "checker_no_swap"
        | "max_auto_priority"
        | "min_auto_priority_delay"
        | "lvs_id"
        | "lvs_sync_daemon"
        | "lvs_flush"
        | "lvs_timeouts"
        | "dynamic_interfaces"
        | "vrrp_lower_priority_dont_send_advert"
        | "vrrp_version_check"
        | "vrrp_netlink_cmd_rcv_bufs"
        | "vrrp_netlink_monitor_rcv_bufs"
        | "use_pid_dir"
        | "linkbeat_use_polling"
        | "process_names"
        | "child_wait_time" => "keepalived process or LVS tuning; memha has no equivalent",
        kw if kw.starts_with("vrrp_garp") || kw.starts_with("vrrp_gna") => {
            "memha's gratuitous ARP timing is built in, not configurable"
        }
        _ => "a keepalived global setting with no equivalent in memha",
    };
    r.to_string()
}

/// Why a top-level keepalived block or keyword has no memha key.
fn top_reason(kw: &str) -> String {
    let r = match kw {
        "vrrp_script" => {
            "not carried over: memha's VRRP speaker follows the cache's own health (its \
             supervisor resigns the moment the cache dies or is not ready), so a script that \
             checks memcached is not needed; an extra check of your own can be written as \
             [[vrrp_script]] (docs/CONFIG.md)"
        }
        "vrrp_track_process" | "track_process" => {
            "not needed: memha's VRRP speaker follows the cache's own health; there is no \
             separate process to watch"
        }
        "vrrp_track_file" | "track_file" | "bfd_instance" => {
            "memha tracks only its own cache and the interfaces in track_interface"
        }
        "vrrp_sync_group" => {
            "sync groups are not carried over: each [[vrrp_instance]] fails over on its own \
             (all of a node's instances follow the same cache health)"
        }
        "virtual_server" | "virtual_server_group" | "real_server" => {
            "keepalived's load balancer (LVS) is not part of memha; keep keepalived for it \
             (without the vrrp_instance), or drop it"
        }
        "static_ipaddress" | "static_routes" | "static_rules" | "static_track_group" => {
            "static addresses, routes and rules are not memha's job: configure them in the \
             system's network configuration"
        }
        "garp_group" => "memha's gratuitous ARP timing is built in, not configurable",
        "linkbeat_interfaces"
        | "net_namespace"
        | "net_namespace_ipvs"
        | "instance"
        | "namespace_with_ipsets"
        | "use_pid_dir"
        | "linkbeat_use_polling"
        | "child_wait_time" => "keepalived process setting; memha has no equivalent",
        _ => "not a keepalived block the importer knows; not translated",
    };
    r.to_string()
}

/// Why a `vrrp_instance` keyword has no memha key.
fn instance_reason(kw: &str) -> Option<String> {
    let r = match kw {
        "track_script" => {
            "not carried over: memha's VRRP speaker follows the cache's own health (its \
             supervisor resigns the moment the cache dies or is not ready); add \
             track_script with a [[vrrp_script]] for an extra check of your own"
        }
        "track_process" => {
            "not needed: memha's VRRP speaker follows the cache's own health; there is no \
             separate process to watch"
        }
        "track_file" | "track_bfd" => {
            "memha tracks only its own cache and the interfaces in track_interface"
        }
        "smtp_alert" => "memha sends no e-mail; a notify script can (it gets the same events)",
        "vmac_xmit_base" | "use_vmac_addr" | "use_ipvlan" => {
            "memha's use_vmac always sends from the macvlan with the virtual MAC; these \
             variants are not available"
        }
        "virtual_routes" | "virtual_rules" => {
            "memha manages only the addresses in virtual_ipaddress; add routes and rules from \
             the notify_master script"
        }
        "virtual_ipaddress_excluded" => {
            "memha manages only the addresses in virtual_ipaddress (which go into the \
             adverts); add these from the notify_master script, or move them into \
             virtual_ipaddress on every node"
        }
        "dont_track_primary" => "memha always tracks the instance's own interface",
        "accept" => "memha accepts traffic to the virtual address (keepalived's default)",
        "no_accept" => {
            "memha always accepts traffic to the virtual address: it serves the cache on it"
        }
        "native_ipv6" => "memha takes the address family from virtual_ipaddress",
        "down_timer_adverts" => {
            "memha uses the RFC's 3 adverts before taking over; every router of the group \
             must agree, so remove it from the keepalived nodes too"
        }
        "mcast_dst_ip" => "memha uses the standard VRRP groups 224.0.0.18 and ff02::12",
        "notify_master_rx_lower_pri" | "notify_deleted" | "notify_priority_changes" => {
            "memha runs notify_master, notify_backup, notify_fault, notify_stop and notify \
             only"
        }
        "strict_mode" => "memha has no strict mode",
        "garp_master_delay"
        | "garp_master_repeat"
        | "garp_lower_prio_delay"
        | "garp_lower_prio_repeat"
        | "garp_master_refresh"
        | "garp_master_refresh_repeat"
        | "garp_extra_if"
        | "garp_extra_if_vmac" => "memha's gratuitous ARP timing is built in, not configurable",
        "higher_prio_send_advert" => {
            "no setting in memha: its speaker is designed to send a last advert whenever it \
             yields, so the new master re-announces the address"
        }
        "skip_check_adv_addr"
        | "debug"
        | "lower_prio_no_advert"
        | "unicast_ttl"
        | "check_unicast_src"
        | "unicast_fault_no_peer"
        | "old_unicast_checksum"
        | "v3_checksum_as_v2"
        | "track_src_ip"
        | "timer_expired_backup"
        | "promote_secondaries"
        | "no_virtual_ipaddress"
        | "lvs_sync_daemon_interface"
        | "kernel_rx_buf_size"
        | "vrf"
        | "auth_hmac" => "keepalived-specific behaviour with no equivalent in memha",
        _ => return None,
    };
    Some(r.to_string())
}

impl Translator<'_> {
    fn file(&self, s: &Stmt) -> String {
        self.files[s.file].clone()
    }

    fn note(&mut self, s: &Stmt, reason: impl Into<String>) {
        self.notes.push(Note {
            file: self.file(s),
            line: s.line,
            end_line: s.end_line,
            text: s.text(),
            reason: reason.into(),
        });
    }

    fn error(&mut self, s: &Stmt, message: impl Into<String>) {
        self.errors.push(ImportError {
            file: self.file(s),
            line: s.line,
            message: format!("`{}`: {}", s.text(), message.into()),
        });
    }

    fn src(s: &Stmt) -> Src {
        Src {
            file: s.file,
            line: s.line,
        }
    }

    /// The single argument of `keyword value`; an error otherwise.
    fn one_arg(&mut self, s: &Stmt) -> Option<String> {
        match s.args() {
            [w] => self.plain(s, w),
            [] => {
                self.error(s, "a value is missing");
                None
            }
            _ => {
                self.error(s, "expected one value");
                None
            }
        }
    }

    /// A word that keepalived would expand (`$NAME`) cannot be translated faithfully.
    fn plain(&mut self, s: &Stmt, w: &Word) -> Option<String> {
        if !w.quoted && w.text.contains('$') {
            self.error(
                s,
                format!(
                    "{} is a keepalived parameter, which the importer does not expand; \
                     write its value instead",
                    w.text
                ),
            );
            return None;
        }
        Some(w.text.clone())
    }

    fn top(&mut self, tree: &[Stmt]) -> Vec<Instance> {
        // global_defs first: its vrrp_version applies to every instance.
        for s in tree.iter().filter(|s| s.keyword() == "global_defs") {
            for g in s.children() {
                match g.keyword() {
                    "vrrp_version" => {
                        if let Some(v) = self.one_arg(g) {
                            match v.as_str() {
                                "2" => self.global_version = Some((2, Self::src(g))),
                                "3" => self.global_version = Some((3, Self::src(g))),
                                _ => self.error(g, "the VRRP version must be 2 or 3"),
                            }
                        }
                    }
                    kw => {
                        let reason = global_reason(kw);
                        self.note(g, reason);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for s in tree {
            let kw = s.keyword();
            if kw == "global_defs" {
                if !s.args().is_empty() {
                    self.note(s, "global_defs takes no arguments");
                }
                continue;
            }
            if kw.starts_with('@') {
                self.note(
                    s,
                    "keepalived's conditional configuration (@…) is not evaluated; translate \
                     the line by hand on the node it is for",
                );
                continue;
            }
            if kw.starts_with('$') {
                self.note(s, "keepalived parameter definitions are not expanded");
                continue;
            }
            if kw == "vrrp_instance" {
                if let Some(i) = self.instance(s) {
                    out.push(i);
                }
                continue;
            }
            let reason = top_reason(kw);
            self.note(s, reason);
        }
        out
    }

    fn instance(&mut self, s: &Stmt) -> Option<Instance> {
        let name = match s.args() {
            [w] => self.plain(s, w)?,
            _ => {
                self.error(s, "vrrp_instance needs exactly one name");
                return None;
            }
        };
        if s.block.is_none() {
            self.error(s, "vrrp_instance without a { … } block");
            return None;
        }
        let errors_before = self.errors.len();

        // The last occurrence of a keyword wins, as in keepalived; earlier ones get a note.
        let mut state: Option<(String, &Stmt)> = None;
        let mut interface: Option<(String, &Stmt)> = None;
        let mut vrid: Option<(u8, &Stmt)> = None;
        let mut priority: Option<(u8, &Stmt)> = None;
        let mut advert: Option<(f64, &Stmt)> = None;
        let mut version: Option<(u8, &Stmt)> = None;
        let mut nopreempt: Option<(bool, &Stmt)> = None;
        let mut use_vmac: Option<(bool, &Stmt)> = None;
        let mut preempt_delay: Option<(f64, &Stmt)> = None;
        let mut auth: Option<&Stmt> = None;
        let mut vips: Vec<(String, &Stmt)> = Vec::new();
        let mut vip_blocks: Vec<&Stmt> = Vec::new();
        let mut src_ip: Option<(IpAddr, &Stmt)> = None;
        let mut peers: Vec<(IpAddr, &Stmt)> = Vec::new();
        let mut tracked: Vec<(String, &Stmt)> = Vec::new();
        let mut notify: [Option<(String, &Stmt)>; 5] = Default::default();
        const NOTIFY: [&str; 5] = [
            "notify_master",
            "notify_backup",
            "notify_fault",
            "notify_stop",
            "notify",
        ];

        fn replace<'s, T>(
            t: &mut Translator<'_>,
            slot: &mut Option<(T, &'s Stmt)>,
            value: T,
            s: &'s Stmt,
        ) {
            if let Some((_, old)) = slot.take() {
                let line = s.line;
                t.note(
                    old,
                    format!("set again on line {line}, which keepalived uses"),
                );
            }
            *slot = Some((value, s));
        }

        for c in s.children() {
            let kw = c.keyword();
            match kw {
                "state" => {
                    if let Some(v) = self.one_arg(c) {
                        if v == "MASTER" || v == "BACKUP" {
                            replace(self, &mut state, v, c);
                        } else {
                            self.error(c, "the state must be MASTER or BACKUP");
                        }
                    }
                }
                "interface" => {
                    if let Some(v) = self.one_arg(c) {
                        replace(self, &mut interface, v, c);
                    }
                }
                "virtual_router_id" => {
                    if let Some(v) = self.one_arg(c) {
                        match v.parse::<u8>() {
                            Ok(n) if n >= 1 => replace(self, &mut vrid, n, c),
                            _ => self.error(c, "the virtual router id must be from 1 to 255"),
                        }
                    }
                }
                "priority" => {
                    if let Some(v) = self.one_arg(c) {
                        match v.parse::<u16>() {
                            Ok(n @ 1..=254) => replace(self, &mut priority, n as u8, c),
                            Ok(255) => {
                                self.note(
                                    c,
                                    "priority 255 (the address owner) is not in memha's range \
                                     1-254: written as 254, the highest (an owner takes the \
                                     address at once on start; 254 takes it after the usual \
                                     wait)",
                                );
                                replace(self, &mut priority, 254, c);
                            }
                            _ => self.error(c, "the priority must be from 1 to 254"),
                        }
                    }
                }
                "advert_int" => {
                    if let Some(v) = self.one_arg(c) {
                        match v.parse::<f64>() {
                            Ok(a) if a.is_finite() && a > 0.0 => replace(self, &mut advert, a, c),
                            _ => self.error(
                                c,
                                "the advert interval must be a number of seconds above 0",
                            ),
                        }
                    }
                }
                "version" | "vrrp_version" => {
                    if let Some(v) = self.one_arg(c) {
                        match v.as_str() {
                            "2" => replace(self, &mut version, 2, c),
                            "3" => replace(self, &mut version, 3, c),
                            _ => self.error(c, "the VRRP version must be 2 or 3"),
                        }
                    }
                }
                "use_vmac" => {
                    if !c.args().is_empty() {
                        self.note(
                            c,
                            "the interface name is not carried over: memha always names the \
                             macvlan vrrp.<virtual_router_id>",
                        );
                    }
                    replace(self, &mut use_vmac, true, c);
                }
                "nopreempt" | "no_preempt" | "preempt" => {
                    if !c.args().is_empty() {
                        self.error(c, format!("{kw} takes no value"));
                    } else {
                        replace(self, &mut nopreempt, kw != "preempt", c);
                    }
                }
                "preempt_delay" => {
                    if let Some(v) = self.one_arg(c) {
                        match v.parse::<f64>() {
                            Ok(d) if (0.0..=1000.0).contains(&d) => {
                                replace(self, &mut preempt_delay, d, c)
                            }
                            _ => self.error(c, "the preempt delay must be from 0 to 1000 seconds"),
                        }
                    }
                }
                "authentication" => {
                    if c.block.is_none() {
                        self.error(c, "authentication needs a { … } block");
                    } else {
                        if let Some(old) = auth.replace(c) {
                            let line = c.line;
                            self.note(
                                old,
                                format!("set again on line {line}, which keepalived uses"),
                            );
                        }
                    }
                }
                "virtual_ipaddress" => {
                    if c.block.is_none() {
                        self.error(c, "virtual_ipaddress needs a { … } block");
                    } else {
                        vip_blocks.push(c);
                    }
                }
                "unicast_src_ip" | "mcast_src_ip" => {
                    if let Some(v) = self.one_arg(c) {
                        match v.parse::<IpAddr>() {
                            Ok(ip) => replace(self, &mut src_ip, ip, c),
                            Err(_) => self.error(c, format!("{v:?} is not an IP address")),
                        }
                    }
                }
                "unicast_peer" => {
                    if c.block.is_none() {
                        self.error(c, "unicast_peer needs a { … } block");
                        continue;
                    }
                    for p in c.children() {
                        let Some(first) = p.words.first() else {
                            continue;
                        };
                        match first.text.parse::<IpAddr>() {
                            Ok(ip) => {
                                if p.words.len() > 1 {
                                    self.note(
                                        p,
                                        "min_ttl/max_ttl are not carried over: memha checks \
                                         the TTL of multicast adverts only (255, as the RFC \
                                         asks)",
                                    );
                                }
                                peers.push((ip, p));
                            }
                            Err(_) => {
                                self.error(p, format!("{:?} is not an IP address", first.text))
                            }
                        }
                    }
                }
                "track_interface" => {
                    if c.block.is_none() {
                        self.error(c, "track_interface needs a { … } block");
                        continue;
                    }
                    for t in c.children() {
                        let Some(first) = t.words.first() else {
                            continue;
                        };
                        let Some(name) = self.plain(t, first) else {
                            continue;
                        };
                        if t.words.len() > 1 {
                            self.note(
                                t,
                                "the weight is not carried over: in memha a tracked interface \
                                 that goes down puts the instance in FAULT (keepalived's \
                                 weight 0)",
                            );
                        }
                        tracked.push((name, t));
                    }
                }
                kw if NOTIFY.contains(&kw) => {
                    let i = NOTIFY.iter().position(|k| *k == kw).expect("listed");
                    let Some(first) = c.args().first() else {
                        self.error(c, "the script is missing");
                        continue;
                    };
                    let Some(script) = self.plain(c, first) else {
                        continue;
                    };
                    if c.args().len() > 1 {
                        self.note(
                            c,
                            "the user and group after the script are not carried over: memha's \
                             notify scripts take no user or group (arguments go inside the quotes, with \
                             the script)",
                        );
                    }
                    replace(self, &mut notify[i], script, c);
                }
                kw if kw.starts_with('@') => self.note(
                    c,
                    "keepalived's conditional configuration (@…) is not evaluated; translate \
                     the line by hand on the node it is for",
                ),
                kw => {
                    let reason = instance_reason(kw).unwrap_or_else(|| {
                        "not a vrrp_instance keyword the importer knows; not translated".to_string()
                    });
                    self.note(c, reason);
                }
            }
        }

        // The addresses, once the interface is known (`dev` is compared with it).
        let iface_name = interface.as_ref().map(|(n, _)| n.clone());
        for b in &vip_blocks {
            for v in b.children() {
                self.vip_line(v, iface_name.as_deref(), &mut vips);
            }
        }

        if self.errors.len() > errors_before {
            return None;
        }
        let Some((interface, iface_stmt)) = interface else {
            self.error(
                s,
                "no interface: memha needs the interface the adverts go out on (`interface \
                 eth0`)",
            );
            return None;
        };
        let Some((vrid, vrid_stmt)) = vrid else {
            self.error(s, "no virtual_router_id");
            return None;
        };
        if vips.is_empty() {
            self.error(
                s,
                "no virtual_ipaddress: memha needs at least one address for the instance to \
                 carry",
            );
            return None;
        }

        let mut inst = Instance {
            name: name.clone(),
            src: Self::src(s),
            keys: Vec::new(),
        };
        let q = quote;
        inst.keys
            .push(("interface", q(&interface), Self::src(iface_stmt)));
        let master = state.as_ref().is_some_and(|(v, _)| v == "MASTER");
        if let Some((v, st)) = &state {
            inst.keys.push(("state", q(v), Self::src(st)));
        }
        inst.keys
            .push(("virtual_router_id", vrid.to_string(), Self::src(vrid_stmt)));
        if let Some((p, st)) = &priority {
            inst.keys.push(("priority", p.to_string(), Self::src(st)));
        }

        // The version: the instance's, else global_defs', else 2; IPv6 forces 3.
        let mut ver: Option<(u8, Src)> = version
            .as_ref()
            .map(|(v, st)| (*v, Self::src(st)))
            .or(self.global_version);
        let v6 = vips.iter().any(|(a, _)| a.contains(':'));
        if v6 && ver.map_or(2, |(v, _)| v) == 2 {
            let at = vips[0].1;
            self.note(
                at,
                "IPv6 addresses need VRRPv3: keepalived runs this instance as version 3, and \
                 so does the translation (version = 3)",
            );
            ver = Some((3, Self::src(at)));
        }
        let effective_version = ver.map_or(2, |(v, _)| v);

        if let Some((a, st)) = &advert {
            let mut a = *a;
            if effective_version == 2 && a.fract() != 0.0 {
                let rounded = a.round().max(1.0);
                self.note(
                    st,
                    format!(
                        "VRRPv2 adverts carry whole seconds: keepalived rounds {a} to {rounded} \
                         (it logs \"must be an integer. rounding\"); written as {rounded}. \
                         Fractions need version 3 on every node"
                    ),
                );
                a = rounded;
            }
            inst.keys.push(("advert_int", fmt_num(a), Self::src(st)));
        }
        if let Some((v, src)) = ver {
            inst.keys.push(("version", v.to_string(), src));
        }
        if let Some((np, st)) = &nopreempt {
            if *np && master {
                self.note(
                    st,
                    "keepalived ignores nopreempt with state MASTER (it logs \"nopreempt will \
                     not work with initial state MASTER - clearing\"), so this node preempts \
                     and the translation leaves nopreempt out; to get what nopreempt promises, \
                     use state BACKUP with nopreempt on every node",
                );
                inst.keys.push((
                    COMMENT,
                    "# nopreempt = true: not in effect under keepalived with state MASTER \
                     (see the notes)"
                        .to_string(),
                    Self::src(st),
                ));
            } else if *np {
                inst.keys
                    .push(("nopreempt", "true".to_string(), Self::src(st)));
            } else {
                inst.keys
                    .push(("nopreempt", "false".to_string(), Self::src(st)));
            }
        }
        if let Some((d, st)) = &preempt_delay {
            inst.keys
                .push(("preempt_delay", fmt_num(*d), Self::src(st)));
        }
        if let Some(a) = auth {
            if let Some(value) = self.authentication(a, effective_version) {
                inst.keys.push(("authentication", value, Self::src(a)));
            }
        }
        let vip_list = format!(
            "[{}]",
            vips.iter()
                .map(|(a, _)| q(a))
                .collect::<Vec<_>>()
                .join(", ")
        );
        inst.keys
            .push(("virtual_ipaddress", vip_list, Self::src(vip_blocks[0])));
        if let Some((ip, st)) = &src_ip {
            if peers.is_empty() {
                self.note(
                    st,
                    "without unicast_peer this is the source of multicast adverts; memha sends \
                     them from the interface's primary address, so it is not carried over",
                );
            } else {
                inst.keys
                    .push(("unicast_src_ip", q(&ip.to_string()), Self::src(st)));
            }
        }
        if !peers.is_empty() {
            let list = format!(
                "[{}]",
                peers
                    .iter()
                    .map(|(ip, _)| q(&ip.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            inst.keys
                .push(("unicast_peer", list, Self::src(peers[0].1)));
        }
        if !tracked.is_empty() {
            let list = format!(
                "[{}]",
                tracked
                    .iter()
                    .map(|(n, _)| q(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            inst.keys
                .push(("track_interface", list, Self::src(tracked[0].1)));
        }
        if let Some((v, st)) = use_vmac {
            inst.keys.push(("use_vmac", v.to_string(), Self::src(st)));
        }
        for (i, slot) in notify.iter().enumerate() {
            if let Some((script, st)) = slot {
                inst.keys.push((NOTIFY[i], q(script), Self::src(st)));
            }
        }
        Some(inst)
    }

    /// One line of `virtual_ipaddress { … }`: an address (or several) and its options.
    fn vip_line<'s>(
        &mut self,
        v: &'s Stmt,
        interface: Option<&str>,
        vips: &mut Vec<(String, &'s Stmt)>,
    ) {
        // Options that take a value, and flags, as `ip address add` has them.
        const WITH_VALUE: [&str; 6] = ["brd", "dev", "scope", "label", "peer", "preferred_lft"];
        let mut dropped: Vec<String> = Vec::new();
        let mut other_dev = false;
        let mut i = 0;
        let words = &v.words;
        let mut found: Vec<String> = Vec::new();
        while i < words.len() {
            let w = &words[i].text;
            if is_address(w) {
                found.push(w.clone());
                i += 1;
                continue;
            }
            if found.is_empty() {
                if !words[i].quoted && w.contains('$') {
                    self.plain(v, &words[i]);
                } else {
                    self.error(
                        v,
                        format!(
                            "{w:?} is not an address memha can read (an IPv4 or IPv6 address, \
                             optionally /prefix)"
                        ),
                    );
                }
                return;
            }
            if WITH_VALUE.contains(&w.as_str()) {
                let value = words.get(i + 1).map_or("", |x| x.text.as_str());
                if w == "dev" && Some(value) != interface {
                    other_dev = true;
                }
                if !(w == "dev" && Some(value) == interface) {
                    dropped.push(format!("{w} {value}"));
                }
                i += 2;
            } else {
                dropped.push(w.clone());
                i += 1;
            }
        }
        if !dropped.is_empty() {
            let mut reason = format!(
                "the address is translated; {} not carried over: memha adds each virtual \
                 address to the instance's interface{}, with no label and the kernel's \
                 defaults",
                dropped.join(", "),
                interface.map(|i| format!(" ({i})")).unwrap_or_default()
            );
            if other_dev {
                reason.push_str(
                    "; an address on another interface can be added by the notify_master \
                     script instead",
                );
            }
            self.note(v, reason);
        }
        for a in found {
            vips.push((a, v));
        }
    }

    /// `authentication { auth_type PASS auth_pass … }` as memha's inline table, or `None`
    /// (with a note) when keepalived would send no authentication.
    fn authentication(&mut self, a: &Stmt, version: u8) -> Option<String> {
        if version == 3 {
            self.note(
                a,
                "VRRPv3 has no authentication: keepalived ignores this block (it logs \"VRRP \
                 version 3 does not support authentication. Ignoring.\"), and so does the \
                 translation",
            );
            return None;
        }
        let mut auth_type: Option<(String, &Stmt)> = None;
        let mut auth_pass: Option<(String, &Stmt)> = None;
        for c in a.children() {
            let mut words = c.words.iter();
            while let Some(k) = words.next() {
                match k.text.as_str() {
                    "auth_type" | "auth_pass" => {
                        let Some(v) = words.next() else {
                            self.error(c, format!("{} needs a value", k.text));
                            return None;
                        };
                        let v = self.plain(c, v)?;
                        if k.text == "auth_type" {
                            auth_type = Some((v, c));
                        } else {
                            auth_pass = Some((v, c));
                        }
                    }
                    _ => {
                        self.note(c, "not an authentication keyword; not translated");
                        break;
                    }
                }
            }
        }
        match auth_type.as_ref().map(|(t, _)| t.as_str()) {
            None => {
                self.note(
                    a,
                    "no auth_type: keepalived sends no authentication, so the translation has \
                     none",
                );
                return None;
            }
            Some("PASS") => {}
            Some("AH") => {
                let st = auth_type.as_ref().expect("matched").1;
                self.note(
                    st,
                    "AH authentication is not supported by memha, so the translation has none; \
                     a memha node and a keepalived node with AH do not accept each other's \
                     adverts: switch every node to PASS (or none) first",
                );
                return None;
            }
            Some(_) => {
                let st = auth_type.as_ref().expect("matched").1;
                self.error(st, "auth_type must be PASS or AH");
                return None;
            }
        }
        let Some((pass, pass_stmt)) = auth_pass else {
            self.error(a, "auth_type PASS without auth_pass");
            return None;
        };
        if pass.is_empty() {
            self.error(pass_stmt, "the password is empty");
            return None;
        }
        let sent = truncate8(&pass);
        if sent.len() < pass.len() {
            self.note(
                pass_stmt,
                format!(
                    "keepalived uses only the first 8 characters of auth_pass (it logs \
                     \"Truncating auth_pass to 8 characters\"): {pass:?} is {sent:?} on the \
                     wire, and memha takes the 8 that are sent, so it is written as {sent:?}"
                ),
            );
        }
        Some(format!(
            "{{ auth_type = \"PASS\", auth_pass = {} }}",
            quote(sent)
        ))
    }
}

/// `192.168.68.46`, `10.0.0.5/24`, `fd00::5/64`.
fn is_address(w: &str) -> bool {
    let addr = w.split_once('/').map_or(w, |(a, _)| a);
    addr.parse::<IpAddr>().is_ok()
}

fn truncate8(s: &str) -> &str {
    let mut end = 8.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// TOML text for a string, quoted and escaped.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A number as TOML: `1`, `0.1`, `2.5`.
fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

// ---------------------------------------------------------------------------------------------
// The output.

fn render(files: &[String], notes: &[Note], instances: &[Instance]) -> String {
    let name = &files[0];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# memha [[vrrp_instance]] sections, translated by `memha import-keepalived` from {name}."
    );
    out.push_str(
        "# Add them to memha.toml (docs/CONFIG.md; docs/MIGRATING.md walks through a migration)\n\
         # and check the result with `memha check-config`. The comment after each key names the\n\
         # keepalived line it comes from. This file may hold the VRRP password: keep it private.\n",
    );
    if notes.is_empty() {
        out.push_str("#\n# Every line was translated.\n");
    } else {
        let _ = writeln!(
            out,
            "#\n# Not translated ({} line(s); also printed on stderr):",
            notes.len()
        );
        for n in notes {
            let text = format!("{n}");
            // Keep the header readable: wrap long notes at word boundaries.
            let mut line = String::from("#   ");
            for word in text.split(' ') {
                if line.len() + word.len() > 96 && line.len() > 8 {
                    out.push_str(line.trim_end());
                    out.push('\n');
                    line = String::from("#       ");
                }
                line.push_str(word);
                line.push(' ');
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    if instances.is_empty() {
        out.push_str("#\n# No vrrp_instance was found: there is nothing to translate.\n");
    }
    for inst in instances {
        out.push('\n');
        // The main file is files[0]; a key from an included file names its file.
        let origin = |src: Src| -> String {
            if src.file == 0 {
                format!("line {}", src.line)
            } else {
                format!("{}:{}", files[src.file], src.line)
            }
        };
        let _ = writeln!(out, "{:<44} # {}", "[[vrrp_instance]]", origin(inst.src));
        let _ = writeln!(out, "name = {}", quote(&inst.name));
        for (key, value, src) in &inst.keys {
            if *key == COMMENT {
                let _ = writeln!(out, "{value}");
                continue;
            }
            let text = format!("{key} = {value}");
            let _ = writeln!(out, "{text:<44} # {}", origin(*src));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_comments_quotes_braces() {
        let words = |line: &str| -> Vec<String> {
            tokenize(line)
                .unwrap()
                .into_iter()
                .map(|t| match t {
                    Token::Word(w) => w.text,
                    Token::Open => "{".to_string(),
                    Token::Close => "}".to_string(),
                })
                .collect()
        };
        assert_eq!(words("  priority 100   # the master"), ["priority", "100"]);
        assert_eq!(words("nopreempt ! comment"), ["nopreempt"]);
        assert_eq!(
            words(r#"notify "/x.sh a#b" root"#),
            ["notify", "/x.sh a#b", "root"]
        );
        assert_eq!(
            words("auth{auth_type PASS}"),
            ["auth", "{", "auth_type", "PASS", "}"]
        );
        assert_eq!(words(r#"a"b c"d 'e f'"#), ["ab cd", "e f"]);
        assert!(tokenize("script \"/x.sh").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.conf", "vi_1.conf"));
        assert!(!glob_match("*.conf", "vi_1.conf.bak"));
        assert!(glob_match("vi_?.conf", "vi_2.conf"));
        assert!(glob_match("vi_[12].conf", "vi_2.conf"));
        assert!(!glob_match("vi_[!12].conf", "vi_2.conf"));
        assert!(glob_match("vi_[a-c].conf", "vi_b.conf"));
    }

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(1.0), "1");
        assert_eq!(fmt_num(0.1), "0.1");
        assert_eq!(truncate8("memcached"), "memcache");
        assert_eq!(truncate8("abc"), "abc");
    }
}
