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
    /// A meta key command (`mg`, `ms`, `md`, `ma`); reply with [`crate::meta::compose`].
    Meta(MetaRequest<'a>),
    /// `mn`: reply `MN` ([`crate::meta::compose_noop`]).
    MetaNoop,
    /// `me <key> [b]`: a human-readable dump of an item's metadata
    /// ([`crate::meta::compose_debug`]). `base64`: the key was given base64-encoded (and
    /// is decoded in `key`).
    MetaDebug {
        key: Key<'a>,
        base64: bool,
    },
}

/// Iterate over the space-separated keys of a `get`-style key list.
pub fn keys(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == b' ').filter(|k| !k.is_empty())
}

/// The four cache operations every key request maps onto, whatever protocol carried it:
/// memcached's meta commands are the most general form of the classic text commands and of
/// the binary opcodes, so the server executes only these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaCmd {
    /// `mg` (and get/gets/gat/gats/touch, binary Get*/Touch/GAT*).
    Get,
    /// `ms` (and set/add/replace/append/prepend/cas, binary Set*/Add*/Replace*/Append*/Prepend*).
    Set,
    /// `md` (and delete, binary Delete*).
    Delete,
    /// `ma` (and incr/decr, binary Increment*/Decrement*).
    Arith,
}

/// `ms` mode (`M` flag): which storage command the set behaves as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SetMode {
    #[default]
    Set,
    Add,
    Replace,
    Append,
    Prepend,
}

/// `ma` mode (`M` flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ArithMode {
    #[default]
    Incr,
    Decr,
}

/// A key as the request named it; a base64 (`b` flag) key is decoded into the request itself
/// so parsing stays allocation-free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key<'a> {
    Raw(&'a [u8]),
    /// Decoded base64 key: `buf[..len]`.
    Decoded {
        buf: [u8; DECODED_KEY_MAX],
        len: u8,
    },
}

/// A base64 key of at most 250 characters decodes to at most this many bytes.
pub const DECODED_KEY_MAX: usize = 190;

impl<'a> Key<'a> {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Raw(k) => k,
            Key::Decoded { buf, len } => &buf[..*len as usize],
        }
    }
}

/// Most return flags one request may list (memcached's limit on meta tokens is similar).
pub const MAX_RETURN_FLAGS: usize = 24;

/// One key operation with every option memcached's meta protocol offers. Classic text and
/// binary requests are expressed in the same form (e.g. `gets k` = `mg k v f c` with classic
/// output), so a single executor implements all semantics.
///
/// Field names follow the meta flag letters they come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaRequest<'a> {
    pub cmd: MetaCmd,
    pub key: Key<'a>,
    /// `b`: the key was base64; return it (`k`) base64-encoded too.
    pub base64: bool,
    /// The value of an `ms` (empty otherwise).
    pub data: &'a [u8],
    /// Return flags as the client listed them, in its order (`c f h k l O s t v` …, each
    /// a flag letter). Meta replies echo them in this order.
    pub ret: [u8; MAX_RETURN_FLAGS],
    pub ret_len: u8,
    /// `v`: send the value (mg), or the number (ma).
    pub ret_value: bool,
    /// `O`: opaque token, copied back (at most 32 bytes).
    pub opaque: Option<&'a [u8]>,
    /// `q`: noreply semantics (hide EN for mg; HD for ms/md/ma; errors still sent).
    pub quiet: bool,
    /// `u`: don't bump the item in the LRU (CLOCK visited bit).
    pub no_bump: bool,
    /// `T`: new TTL (raw client value: memcached's relative/absolute/negative rules apply).
    pub ttl: Option<i64>,
    /// `N`: vivify on miss with this TTL (mg, ma, ms append mode).
    pub vivify: Option<i64>,
    /// `R`: win the recache if the remaining TTL is below this.
    pub recache: Option<i64>,
    /// `C`: compare CAS.
    pub compare_cas: Option<u64>,
    /// `E`: use this as the new CAS if the item changes.
    pub new_cas: Option<u64>,
    /// `F`: client flags for ms.
    pub client_flags: Option<u32>,
    /// `I`: invalidate (ms: store as stale if CAS is older; md: mark stale instead of delete).
    pub invalidate: bool,
    /// `M` for ms.
    pub set_mode: SetMode,
    /// `M` for ma.
    pub arith_mode: ArithMode,
    /// `D`: ma delta (default 1).
    pub delta: u64,
    /// `J`: ma initial value on vivify (default 0).
    pub initial: u64,
    /// `x` on md: drop the value, keep the item.
    pub remove_value: bool,
}

impl<'a> MetaRequest<'a> {
    /// A request with no flags set.
    pub fn new(cmd: MetaCmd, key: Key<'a>) -> Self {
        MetaRequest {
            cmd,
            key,
            base64: false,
            data: &[],
            ret: [0; MAX_RETURN_FLAGS],
            ret_len: 0,
            ret_value: false,
            opaque: None,
            quiet: false,
            no_bump: false,
            ttl: None,
            vivify: None,
            recache: None,
            compare_cas: None,
            new_cas: None,
            client_flags: None,
            invalidate: false,
            set_mode: SetMode::Set,
            arith_mode: ArithMode::Incr,
            delta: 1,
            initial: 0,
            remove_value: false,
        }
    }

    /// The return flags in request order.
    pub fn returns(&self) -> &[u8] {
        &self.ret[..self.ret_len as usize]
    }

    /// Is return flag `f` asked for?
    pub fn wants(&self, f: u8) -> bool {
        self.returns().contains(&f)
    }

    /// Add a return flag (ignored beyond [`MAX_RETURN_FLAGS`]).
    pub fn push_return(&mut self, f: u8) {
        if (self.ret_len as usize) < MAX_RETURN_FLAGS {
            self.ret[self.ret_len as usize] = f;
            self.ret_len += 1;
        }
    }
}

/// What executing a [`MetaRequest`] came to; each protocol composes its reply from this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// mg found the item / ma applied / md invalidated: HD or VA.
    Hit,
    /// mg: no such item (EN).
    Miss,
    /// ms stored (HD).
    Stored,
    /// ms: add on existing, replace/append/prepend on missing (NS).
    NotStored,
    /// CAS mismatch (EX).
    Exists,
    /// md/ma/ms-with-CAS on a missing item (NF).
    NotFound,
    /// md deleted (HD).
    Deleted,
    /// The value is too large for the server.
    TooLarge,
    /// Out of memory with eviction off.
    NoMemory,
    /// ma on a value that is not a decimal number.
    NonNumeric,
}

/// The item facts a reply may carry (meta return flags, classic VALUE lines, binary extras).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ItemInfo {
    pub flags: u32,
    pub cas: u64,
    /// Seconds of life left, -1 = never expires.
    pub ttl: i64,
    /// Seconds since the last access (before this one).
    pub last_access: u64,
    /// Whether it had been fetched before this request.
    pub hit_before: bool,
    /// Value length.
    pub size: usize,
    /// ma: the counter value after the operation.
    pub number: u64,
}

/// Executor result: status, item facts when there is an item, and the recache signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub item: Option<ItemInfo>,
    /// W: this client won the right to recache.
    pub won: bool,
    /// X: the item is stale (invalidated).
    pub stale: bool,
    /// Z: another client already won the recache.
    pub lost: bool,
}

impl Outcome {
    pub fn status(status: Status) -> Outcome {
        Outcome {
            status,
            item: None,
            won: false,
            stale: false,
            lost: false,
        }
    }
}
