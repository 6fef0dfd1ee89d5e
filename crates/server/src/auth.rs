//! ASCII authentication (`-Y authfile`), memcached-compatible.
//!
//! The file holds `user:password` lines. A client logs in by sending a `set` whose data block
//! is `user password`; until then every command is refused. Passwords are compared in
//! constant time so a network observer cannot learn them byte by byte from reply timing.

use std::path::Path;

/// The accepted credentials.
#[derive(Clone, Debug, Default)]
pub struct AuthTable {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl AuthTable {
    /// Read an auth file; the error says which file and what is wrong with it.
    pub fn load(path: &Path) -> Result<AuthTable, String> {
        let text = std::fs::read(path)
            .map_err(|e| format!("cannot read auth file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("auth file {}: {e}", path.display()))
    }

    /// Parse `user:password` lines; blank lines are skipped.
    pub fn parse(text: &[u8]) -> Result<AuthTable, String> {
        let mut entries = Vec::new();
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(format!(
                    "line {}: expected user:password, found no ':'",
                    n + 1
                ));
            };
            let (user, pass) = (&line[..colon], &line[colon + 1..]);
            if user.is_empty() {
                return Err(format!("line {}: empty user name", n + 1));
            }
            entries.push((user.to_vec(), pass.to_vec()));
        }
        if entries.is_empty() {
            return Err("no user:password lines".into());
        }
        Ok(AuthTable { entries })
    }

    /// Check a login data block `user password`.
    pub fn check(&self, data: &[u8]) -> bool {
        let Some(space) = data.iter().position(|&b| b == b' ') else {
            return false;
        };
        let (user, pass) = (&data[..space], &data[space + 1..]);
        let mut ok = false;
        for (u, p) in &self.entries {
            ok |= u == user && constant_time_eq(p, pass);
        }
        ok
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_check() {
        let t = AuthTable::parse(b"foo:bar\nbaaaz:quux\n").unwrap();
        assert!(t.check(b"foo bar"));
        assert!(t.check(b"baaaz quux"));
        assert!(!t.check(b"foo bab"));
        assert!(!t.check(b"foobar"));
        assert!(AuthTable::parse(b"nocolon\n").is_err());
        assert!(AuthTable::parse(b"").is_err());
    }
}
