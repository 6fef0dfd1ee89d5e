//! Request counters behind `stats`.
//!
//! Why two levels: a counter shared by all worker threads costs a contended atomic per
//! request. Each connection therefore counts into a plain [`Counters`] while it works through
//! a batch and adds it into the process-wide [`GlobalStats`] once per batch.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Per-connection counts for one batch of requests.
        #[derive(Default, Clone, Debug)]
        pub struct Counters { $(pub $name: u64,)* }

        /// Process-wide totals (reset by `stats reset`).
        #[derive(Default, Debug)]
        pub struct GlobalStats { $(pub $name: AtomicU64,)* }

        impl GlobalStats {
            /// Add a batch's counts and zero them.
            pub fn absorb(&self, c: &mut Counters) {
                $(if c.$name != 0 { self.$name.fetch_add(c.$name, Relaxed); })*
                *c = Counters::default();
            }

            /// A consistent-enough copy for reporting.
            pub fn snapshot(&self) -> Counters {
                Counters { $($name: self.$name.load(Relaxed),)* }
            }

            /// `stats reset`.
            pub fn reset(&self) {
                $(self.$name.store(0, Relaxed);)*
            }
        }
    };
}

impl Counters {
    /// Did this batch change the cache (as far as a replica needs to know)?
    pub fn wrote(&self) -> bool {
        self.cmd_set
            + self.delete_hits
            + self.incr_hits
            + self.decr_hits
            + self.incr_misses
            + self.decr_misses
            + self.touch_hits
            + self.cmd_flush
            > 0
    }
}

counters!(
    cmd_get,
    cmd_set,
    cmd_flush,
    cmd_touch,
    get_hits,
    get_misses,
    get_expired,
    get_flushed,
    delete_hits,
    delete_misses,
    incr_hits,
    incr_misses,
    decr_hits,
    decr_misses,
    cas_hits,
    cas_misses,
    cas_badval,
    touch_hits,
    touch_misses,
    store_too_large,
    store_no_memory,
    auth_cmds,
    auth_errors,
    bytes_read,
    bytes_written,
    conn_yields,
    idle_kicks,
    total_connections,
    rejected_connections,
    malformed_requests,
);
