//! The request model shared by every protocol: what a client asked for, with borrowed keys and
//! values and the raw numbers as the client sent them (TTL rules are applied by the server,
//! which knows the clock).

/// How a storage command treats an existing item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// Compare-and-swap: store only if the item's CAS unique matches.
    Cas,
}

impl StoreMode {
    /// The command word that selects this mode in the text protocol.
    pub fn name(self) -> &'static str {
        match self {
            StoreMode::Set => "set",
            StoreMode::Add => "add",
            StoreMode::Replace => "replace",
            StoreMode::Append => "append",
            StoreMode::Prepend => "prepend",
            StoreMode::Cas => "cas",
        }
    }
}

/// One parsed request. Slices borrow from the connection's read buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `get`/`gets`/`gat`/`gats`. `keys` is the rest of the line: already checked to hold at
    /// least one key and no key longer than [`crate::MAX_KEY_LEN`]; iterate with [`keys`].
    Get {
        keys: &'a [u8],
        with_cas: bool,
        /// `Some(exptime)` for gat/gats: also set a new TTL.
        touch: Option<i64>,
    },
    Store {
        mode: StoreMode,
        key: &'a [u8],
        flags: u32,
        exptime: i64,
        data: &'a [u8],
        /// Only meaningful for [`StoreMode::Cas`].
        cas: u64,
        noreply: bool,
    },
    Delete {
        key: &'a [u8],
        noreply: bool,
    },
    Arith {
        key: &'a [u8],
        incr: bool,
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: &'a [u8],
        exptime: i64,
        noreply: bool,
    },
    /// `delay` 0 = now.
    FlushAll {
        delay: i64,
        noreply: bool,
    },
    Version,
    Verbosity {
        noreply: bool,
    },
    Quit,
    Shutdown {
        graceful: bool,
    },
    CacheMemlimit {
        megabytes: u64,
        noreply: bool,
    },
    /// `stats [args…]`; `args` is the rest of the line, trimmed.
    Stats {
        args: &'a [u8],
    },
    /// Slab and LRU administration that memha's allocator has no use for; answered `OK`
    /// once the arguments are well-formed, as scripts written for memcached expect.
    AdminNoop {
        noreply: bool,
    },
}

/// Iterate over the space-separated keys of a `get`-style key list.
pub fn keys(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == b' ').filter(|k| !k.is_empty())
}
