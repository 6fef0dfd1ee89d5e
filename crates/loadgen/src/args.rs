//! Command-line options (hand-parsed: `--name value` or `--name=value`).

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `get <key>` / `set <key> 0 0 <len>`
    Text,
    /// `mg <key> v` / `ms <key> <len> T0`
    Meta,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Args {
    pub server: String,
    pub protocol: Protocol,
    pub clients: usize,
    pub pipeline: usize,
    /// sets per cycle
    pub ratio_sets: u32,
    /// gets per cycle
    pub ratio_gets: u32,
    pub key_prefix: String,
    pub key_min: u64,
    pub key_max: u64,
    pub data_size: usize,
    /// seconds of measured load; 0 = none (useful with `--prefill`)
    pub test_time: f64,
    pub prefill: bool,
    pub json: bool,
    pub seed: u64,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            server: "127.0.0.1:11211".into(),
            protocol: Protocol::Text,
            clients: 50,
            pipeline: 1,
            ratio_sets: 1,
            ratio_gets: 9,
            key_prefix: "bench:kkkkkkkkkkkkkkkkkk:".into(),
            key_min: 1_000_000,
            key_max: 1_099_999,
            data_size: 100,
            test_time: 10.0,
            prefill: false,
            json: false,
            seed: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ArgError {
    Help,
    Msg(String),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Help => f.write_str(USAGE),
            ArgError::Msg(m) => write!(f, "memha-loadgen: {m}\n(see --help)"),
        }
    }
}

pub const USAGE: &str = "\
memha-loadgen: closed-loop load generator for memcache text / meta protocols

usage: memha-loadgen [options]
  --server HOST:PORT     server address                      [127.0.0.1:11211]
  --protocol text|meta   text: get/set; meta: mg <k> v / ms <k> <len> T0   [text]
  --clients N            connections (all driven by one thread)           [50]
  --pipeline N           requests kept in flight per connection           [1]
  --ratio S:G            sets:gets per cycle                              [1:9]
  --key-prefix STR       key = prefix + decimal id        [bench:kkkkkkkkkkkkkkkkkk:]
  --key-min N            smallest key id                                  [1000000]
  --key-max N            largest key id (inclusive)                       [1099999]
  --data-size N          value bytes for sets                             [100]
  --test-time SECS       measured duration; 0 = no measured phase         [10]
  --prefill              first store every key in [key-min, key-max] once
  --json                 print the result as one JSON object on stdout
  --seed N               random seed (each connection derives its own)
  -h, --help             this text
";

fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ArgError> {
    v.parse()
        .map_err(|_| ArgError::Msg(format!("invalid value for --{name}: {v:?}")))
}

pub fn parse<I: IntoIterator<Item = String>>(it: I) -> Result<Args, ArgError> {
    let mut a = Args::default();
    let mut it = it.into_iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Err(ArgError::Help);
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(ArgError::Msg(format!("unexpected argument {arg:?}")));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        // flags without a value
        match name.as_str() {
            "prefill" | "json" => {
                if inline.is_some() {
                    return Err(ArgError::Msg(format!("--{name} takes no value")));
                }
                if name == "prefill" {
                    a.prefill = true;
                } else {
                    a.json = true;
                }
                continue;
            }
            _ => {}
        }
        let v = match inline {
            Some(v) => v,
            None => it
                .next()
                .ok_or_else(|| ArgError::Msg(format!("--{name} needs a value")))?,
        };
        match name.as_str() {
            "server" => a.server = v,
            "protocol" => {
                a.protocol = match v.as_str() {
                    "text" | "memcache_text" => Protocol::Text,
                    "meta" => Protocol::Meta,
                    _ => return Err(ArgError::Msg(format!("unknown protocol {v:?} (text|meta)"))),
                }
            }
            "clients" => a.clients = num(&name, &v)?,
            "pipeline" => a.pipeline = num(&name, &v)?,
            "ratio" => {
                let (s, g) = v
                    .split_once(':')
                    .ok_or_else(|| ArgError::Msg(format!("--ratio wants SETS:GETS, got {v:?}")))?;
                a.ratio_sets = num(&name, s)?;
                a.ratio_gets = num(&name, g)?;
            }
            "key-prefix" => a.key_prefix = v,
            "key-min" => a.key_min = num(&name, &v)?,
            "key-max" => a.key_max = num(&name, &v)?,
            "data-size" => a.data_size = num(&name, &v)?,
            "test-time" => a.test_time = num(&name, &v)?,
            "seed" => a.seed = num(&name, &v)?,
            _ => return Err(ArgError::Msg(format!("unknown option --{name}"))),
        }
    }
    validate(&a)?;
    Ok(a)
}

fn validate(a: &Args) -> Result<(), ArgError> {
    let err = |m: &str| Err(ArgError::Msg(m.to_string()));
    if a.clients == 0 || a.pipeline == 0 {
        return err("--clients and --pipeline must be >= 1");
    }
    if a.ratio_sets == 0 && a.ratio_gets == 0 {
        return err("--ratio 0:0 issues nothing");
    }
    if a.key_max < a.key_min {
        return err("--key-max is below --key-min");
    }
    if a.key_max - a.key_min >= u32::MAX as u64 {
        return err("key range too large (at most 2^32 - 1 ids)");
    }
    if a.key_prefix.len() + 20 > 250 || a.key_prefix.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return err(
            "--key-prefix must be printable, without spaces, and short enough for 250-byte keys",
        );
    }
    if !(a.test_time >= 0.0 && a.test_time.is_finite()) {
        return err("--test-time must be a number of seconds >= 0");
    }
    if a.test_time == 0.0 && !a.prefill {
        return err("nothing to do: --test-time 0 without --prefill");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Args, ArgError> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults() {
        assert_eq!(p("").unwrap(), Args::default());
    }

    #[test]
    fn all_options_both_spellings() {
        let a = p(
            "--server 10.0.0.1:1 --protocol=meta --clients 8 --pipeline=16 --ratio 0:1 \
                   --key-prefix=x: --key-min 5 --key-max=9 --data-size 4096 --test-time 2.5 \
                   --prefill --json --seed 7",
        )
        .unwrap();
        assert_eq!(a.server, "10.0.0.1:1");
        assert_eq!(a.protocol, Protocol::Meta);
        assert_eq!((a.clients, a.pipeline), (8, 16));
        assert_eq!((a.ratio_sets, a.ratio_gets), (0, 1));
        assert_eq!(a.key_prefix, "x:");
        assert_eq!((a.key_min, a.key_max), (5, 9));
        assert_eq!(a.data_size, 4096);
        assert_eq!(a.test_time, 2.5);
        assert!(a.prefill && a.json);
        assert_eq!(a.seed, 7);
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "--protocol binary",
            "--clients 0",
            "--ratio 1-9",
            "--ratio 0:0",
            "--key-min 10 --key-max 9",
            "--pipeline",
            "--bogus 1",
            "stray",
            "--json=1",
            "--test-time 0",
            "--test-time -1",
            "--key-prefix a\u{7f}b",
        ] {
            assert!(matches!(p(bad), Err(ArgError::Msg(_))), "{bad}");
        }
        assert_eq!(p("--help"), Err(ArgError::Help));
        assert!(p("--test-time 0 --prefill").is_ok());
    }
}
