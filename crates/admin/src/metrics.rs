//! `/metrics`: Prometheus text exposition format 0.0.4.
//!
//! Names follow Prometheus conventions: a `memha_` prefix, base units in the name
//! (`_seconds`, `_bytes`), `_total` on counters. The counters are memcached's and reset on
//! `stats reset` like theirs; Prometheus's `rate()` treats that as a counter reset.
//!
//! Order of the exposition:
//! 1. `memha_build_info{version}`.
//! 2. The single-valued figures, [`SCALARS`].
//! 3. Per size class (`memha_class_*{class,chunk_size}`), as `stats items`/`stats slabs`.
//! 4. **Replication goes here**: `memha_replication_*` (peers, per-peer `{peer="host:port"}`
//!    connected/lag seconds/queued writes/bytes sent and received, full syncs total).
//! 5. **VRRP goes here**: `memha_vrrp_*` (`memha_vrrp_state{state="master|backup|fault"}`
//!    1/0, priority, transitions total, advertisements sent/received total).

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::snapshot::{Kind, Num, Snapshot, SCALARS};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Render a snapshot as a text exposition.
pub fn render(s: &Snapshot) -> String {
    let mut out = Exposition::default();
    out.family(
        "memha_build_info",
        Kind::Gauge,
        "Always 1; the labels carry the server's version.",
    );
    out.sample("memha_build_info", &[("version", s.version)], Num::Int(1));

    let mut current = "";
    for sc in SCALARS {
        if sc.metric != current {
            out.family(sc.metric, sc.kind, sc.help);
            current = sc.metric;
        }
        let labels: &[(&str, &str)] = if sc.label.0.is_empty() {
            &[]
        } else {
            &[sc.label]
        };
        out.sample(sc.metric, labels, (sc.value)(s));
    }

    // Per size class. Classes appear once they hold an item or counted an event.
    type ClassFig = fn(&Snapshot, &memha_store::ClassStats) -> u64;
    let per_class: [(&str, Kind, &str, ClassFig); 9] = [
        (
            "memha_class_items",
            Kind::Gauge,
            "Live items in the size class (the slab class memcached would use).",
            |_, c| c.number,
        ),
        (
            "memha_class_item_bytes",
            Kind::Gauge,
            "Size of the class's live items as memcached counts it.",
            |_, c| c.bytes,
        ),
        (
            "memha_class_oldest_item_age_seconds",
            Kind::Gauge,
            "Seconds since the class's least recently used item was used.",
            |s, c| s.class_age(c),
        ),
        (
            "memha_class_evictions_total",
            Kind::Counter,
            "Items of the class evicted.",
            |_, c| c.evicted,
        ),
        (
            "memha_class_evicted_nonzero_total",
            Kind::Counter,
            "Items of the class evicted that had an expiry time.",
            |_, c| c.evicted_nonzero,
        ),
        (
            "memha_class_evicted_unfetched_total",
            Kind::Counter,
            "Items of the class evicted without being read.",
            |_, c| c.evicted_unfetched,
        ),
        (
            "memha_class_expired_unfetched_total",
            Kind::Counter,
            "Items of the class that expired without being read.",
            |_, c| c.expired_unfetched,
        ),
        (
            "memha_class_reclaimed_total",
            Kind::Counter,
            "Expired items of the class whose memory was reused.",
            |_, c| c.reclaimed,
        ),
        (
            "memha_class_out_of_memory_total",
            Kind::Counter,
            "Writes to the class refused for lack of memory.",
            |_, c| c.outofmemory,
        ),
    ];
    for (name, kind, help, fig) in per_class {
        out.family(name, kind, help);
        for c in &s.classes {
            let class = c.class.to_string();
            let chunk = c.chunk_size.to_string();
            out.sample(
                name,
                &[("class", &class), ("chunk_size", &chunk)],
                Num::Int(fig(s, c)),
            );
        }
    }

    // Replication metrics: see the module documentation, item 4.
    // VRRP metrics: see the module documentation, item 5.
    out.text
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.name());
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: Num) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Check a text exposition: every line is a `# HELP`, `# TYPE` or a sample
/// `name{label="value",…} value`; every sample's family has exactly one HELP and one TYPE,
/// given before its samples; no series (name and labels) repeats. Returns the number of
/// samples. Used by the tests; public so other crates' tests can check the endpoint too.
pub fn validate(text: &str) -> Result<usize, String> {
    #[derive(Default)]
    struct Family {
        help: usize,
        kind: Option<String>,
        samples: usize,
    }
    let mut families: HashMap<String, Family> = HashMap::new();
    let mut series = std::collections::HashSet::new();
    let mut samples = 0;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the exposition does not end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            check_name(name).map_err(|e| format!("line {n}: {e}"))?;
            let f = families.entry(name.to_string()).or_default();
            f.help += 1;
            if f.help > 1 {
                return Err(format!("line {n}: second HELP for {name}"));
            }
            if f.samples > 0 {
                return Err(format!("line {n}: HELP for {name} after its samples"));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            let (name, kind) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            check_name(name).map_err(|e| format!("line {n}: {e}"))?;
            if words.next().is_some()
                || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
            {
                return Err(format!("line {n}: bad TYPE line"));
            }
            let f = families.entry(name.to_string()).or_default();
            if f.kind.is_some() {
                return Err(format!("line {n}: second TYPE for {name}"));
            }
            if f.samples > 0 {
                return Err(format!("line {n}: TYPE for {name} after its samples"));
            }
            f.kind = Some(kind.to_string());
        } else if line.starts_with('#') {
            continue;
        } else {
            let (name, labels, value) = parse_sample(line).map_err(|e| format!("line {n}: {e}"))?;
            value
                .parse::<f64>()
                .map_err(|_| format!("line {n}: bad value {value:?}"))?;
            let f = families
                .get_mut(name)
                .ok_or_else(|| format!("line {n}: {name} has no HELP/TYPE"))?;
            if f.help != 1 || f.kind.is_none() {
                return Err(format!("line {n}: {name} lacks HELP or TYPE"));
            }
            if f.kind.as_deref() == Some("counter") && !name.ends_with("_total") {
                return Err(format!("line {n}: counter {name} does not end in _total"));
            }
            f.samples += 1;
            if !series.insert((name.to_string(), labels)) {
                return Err(format!("line {n}: repeated series"));
            }
            samples += 1;
        }
    }
    Ok(samples)
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphabetic() || b == b'_' || b == b':' || (i > 0 && b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

/// Label pairs of a sample, sorted.
type Labels = Vec<(String, String)>;

/// `name{k="v",…} value` → (name, sorted labels, value).
fn parse_sample(line: &str) -> Result<(&str, Labels, &str), String> {
    let end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("not a sample: {line:?}"))?;
    let name = &line[..end];
    check_name(name)?;
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=').ok_or("label without '='")?;
            let key = &rest[..eq];
            if !key
                .bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_alphabetic() || b == b'_' || (i > 0 && b.is_ascii_digit()))
                || key.is_empty()
            {
                return Err(format!("bad label name {key:?}"));
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let close = loop {
                match chars.next() {
                    None => return Err("unterminated label value".into()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        _ => return Err("bad escape in label value".into()),
                    },
                    Some((_, c)) => value.push(c),
                }
            };
            labels.push((key.to_string(), value));
            rest = &rest[close + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err("expected ',' or '}' after a label".into());
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    if value.is_empty() || value.contains(' ') {
        // A timestamp would follow a second space; this exporter never writes one.
        return Err(format!("bad value field {value:?}"));
    }
    labels.sort();
    let names: std::collections::HashSet<_> = labels.iter().map(|(k, _)| k).collect();
    if names.len() != labels.len() {
        return Err("repeated label name".into());
    }
    Ok((name, labels, value))
}

/// The value of one series in an exposition (`labels` as `k="v"` pairs, any order), for
/// tests.
pub fn sample_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.sort();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| parse_sample(l).ok())
        .find(|(n, l, _)| *n == name && *l == want)
        .and_then(|(_, _, v)| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use memha_server::stats::Counters;
    use memha_store::{ClassStats, StoreStats};

    fn snapshot() -> Snapshot {
        let counters = Counters {
            cmd_get: 7,
            get_hits: 5,
            get_misses: 2,
            ..Counters::default()
        };
        let store = StoreStats {
            curr_items: 3,
            memory_limit: 1 << 26,
            memory_used: 12345,
            ..StoreStats::default()
        };
        let class = |class, chunk_size, number| ClassStats {
            class,
            chunk_size,
            number,
            bytes: number * 80,
            oldest_atime: 999,
            ..ClassStats::default()
        };
        Snapshot {
            version: "1.6.45-memha-\"test\"\\",
            pid: 1,
            now: 1000,
            started: 900,
            uptime: 100,
            role: "single node",
            ready: true,
            stopping: false,
            cpu_user: 0.25,
            cpu_system: 1e-7,
            threads: 4,
            max_connections: 1024,
            connections: 2,
            counters,
            store,
            classes: vec![class(1, 96, 2), class(3, 152, 1)],
        }
    }

    #[test]
    fn exposition_is_well_formed() {
        let text = render(&snapshot());
        let n = validate(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        // Every scalar, the build info and 9 per-class families × 2 classes.
        assert_eq!(n, SCALARS.len() + 1 + 9 * 2);
        for sc in SCALARS {
            assert!(text.contains(&format!("# TYPE {} ", sc.metric)));
        }
        assert_eq!(
            sample_value(&text, "memha_commands_total", &[("command", "get")]),
            Some(7.0)
        );
        assert_eq!(sample_value(&text, "memha_get_hits_total", &[]), Some(5.0));
        assert_eq!(sample_value(&text, "memha_items", &[]), Some(3.0));
        assert_eq!(
            sample_value(&text, "memha_memory_limit_bytes", &[]),
            Some(67108864.0)
        );
        assert_eq!(
            sample_value(&text, "memha_cpu_system_seconds_total", &[]),
            Some(1e-7)
        );
        assert_eq!(
            sample_value(
                &text,
                "memha_class_items",
                &[("chunk_size", "152"), ("class", "3")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample_value(
                &text,
                "memha_build_info",
                &[("version", "1.6.45-memha-\"test\"\\")]
            ),
            Some(1.0)
        );
        assert_eq!(sample_value(&text, "memha_up", &[]), Some(1.0));
        assert_eq!(sample_value(&text, "memha_ready", &[]), Some(1.0));
    }

    #[test]
    fn no_classes_still_declares_the_families() {
        let mut s = snapshot();
        s.classes.clear();
        let text = render(&s);
        assert_eq!(validate(&text), Ok(SCALARS.len() + 1));
        assert!(text.contains("# TYPE memha_class_items gauge"));
    }

    #[test]
    fn validator_rejects_bad_expositions() {
        let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\"} 1\n";
        assert_eq!(validate(ok), Ok(1));
        for bad in [
            "a 1\n",                                              // no HELP/TYPE
            "# HELP a x\n# HELP a x\n# TYPE a gauge\na 1\n",      // two HELPs
            "# HELP a x\n# TYPE a gauge\n# TYPE a gauge\na 1\n",  // two TYPEs
            "# HELP a x\n# TYPE a gauge\na\n",                    // no value
            "# HELP a x\n# TYPE a gauge\na one\n",                // bad value
            "# HELP a x\n# TYPE a gauge\na{k=v} 1\n",             // unquoted
            "# HELP a x\n# TYPE a gauge\na{k=\"v} 1\n",           // unterminated
            "# HELP a x\n# TYPE a gauge\na 1\na 2\n",             // repeated series
            "# HELP a x\n# TYPE a counter\na 1\n",                // counter sans _total
            "# HELP a x\n# TYPE a gauge\na 1\n# HELP a y\n",      // HELP after samples
            "# HELP 1a x\n# TYPE 1a gauge\n1a 1\n",               // bad name
            "# HELP a x\n# TYPE a gauge\na 1",                    // no final newline
            "# HELP a x\n# TYPE a gauge\na{k=\"1\",k=\"2\"} 1\n", // repeated label
        ] {
            assert!(validate(bad).is_err(), "accepted {bad:?}");
        }
    }
}
