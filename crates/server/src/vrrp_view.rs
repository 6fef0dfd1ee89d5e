//! What the data process knows about VRRP, for `stats vrrp` and `/metrics`.
//!
//! With `[[vrrp_instance]]`s configured, the VRRP speaker runs in memha's supervisor process,
//! not in the process that serves clients (it must outlive a crash of the cache). The
//! supervisor sends its state over the pipe it shares with the data process, in the small
//! line format below, and the data process keeps the latest copy here so the usual places
//! (`stats vrrp`, the admin endpoint) show it.
//!
//! Format: `instance NAME` starts an instance, then `KEY VALUE` lines, `end` closes the
//! block. Keys and names contain no spaces; values are single tokens.

/// The supervisor's view of every VRRP instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VrrpView {
    pub instances: Vec<VrrpInstanceView>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VrrpInstanceView {
    pub name: String,
    /// `(key, value)` in the speaker's order (`state`, `priority`, `master`, counters…).
    pub values: Vec<(String, String)>,
}

impl VrrpInstanceView {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl VrrpView {
    /// The block sent over the pipe, ending with `end\n`.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        for inst in &self.instances {
            s.push_str("instance ");
            s.push_str(&clean(&inst.name));
            s.push('\n');
            for (k, v) in &inst.values {
                s.push_str(&clean(k));
                s.push(' ');
                s.push_str(&clean(v));
                s.push('\n');
            }
        }
        s.push_str("end\n");
        s
    }

    /// Parses the lines of one block (without the `end` line). Lines that do not fit the
    /// format are skipped: the supervisor is trusted, but a garbled line must not break
    /// `stats`.
    pub fn decode<'a>(lines: impl IntoIterator<Item = &'a str>) -> VrrpView {
        let mut view = VrrpView::default();
        for line in lines {
            let Some((k, v)) = line.split_once(' ') else {
                continue;
            };
            if k == "instance" {
                view.instances.push(VrrpInstanceView {
                    name: v.to_string(),
                    values: Vec::new(),
                });
            } else if let Some(inst) = view.instances.last_mut() {
                inst.values.push((k.to_string(), v.to_string()));
            }
        }
        view
    }
}

/// Keeps a value to one printable token.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let view = VrrpView {
            instances: vec![VrrpInstanceView {
                name: "VI 1".into(),
                values: vec![
                    ("state".into(), "MASTER".into()),
                    ("vips".into(), "10.0.0.1,10.0.0.2".into()),
                ],
            }],
        };
        let text = view.encode();
        assert!(text.ends_with("end\n"));
        let lines: Vec<&str> = text.lines().take_while(|l| *l != "end").collect();
        let back = VrrpView::decode(lines);
        assert_eq!(back.instances[0].name, "VI_1");
        assert_eq!(back.instances[0].get("state"), Some("MASTER"));
        assert_eq!(back.instances[0].get("vips"), Some("10.0.0.1,10.0.0.2"));
        assert_eq!(VrrpView::decode(["garbage", "x y"]).instances.len(), 0);
    }
}
