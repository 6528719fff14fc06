//! Whether Redis may evict rate-limit keys: what a [`RedisStore`](super::RedisStore)
//! reads from `CONFIG GET maxmemory` and `CONFIG GET maxmemory-policy`, and the one
//! warning it logs when eviction is possible.
//!
//! An evicted rate-limit key is a reset limit: a client that had used up its quota
//! starts over. With `maxmemory` set and any policy but `noeviction` (the `volatile-*`
//! ones included: every rate-limit key has a TTL), a flood of new keys (random bearer
//! tokens under a rule keyed on them) makes Redis evict live keys of other clients. With
//! `noeviction` Redis refuses writes at its cap (`OOM`) instead, and the store falls back
//! ([`RedisFallback`](super::RedisFallback)): limits hold, per instance.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use redis::aio::ConnectionManager;

/// What a [`RedisStore`](super::RedisStore) found about Redis' eviction settings
/// ([`RedisStore::memory_policy`](super::RedisStore::memory_policy)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RedisMemoryPolicy {
    /// Not read yet (no call has reached Redis so far).
    #[default]
    NotChecked,
    /// Redis refused `CONFIG GET` (disabled, renamed or denied by an ACL, as managed
    /// Redis services often do): the policy could not be checked.
    Unknown,
    /// The settings read.
    Read {
        /// `maxmemory` in bytes (0: no cap).
        maxmemory: u64,
        /// `maxmemory-policy` (`noeviction`, `allkeys-lru`, `volatile-ttl`, ...).
        policy: String,
    },
}

impl RedisMemoryPolicy {
    /// Whether Redis may evict rate-limit keys (resetting their limits): a memory cap
    /// with any policy but `noeviction`.
    ///
    /// ```
    /// use tower_throttle::store::RedisMemoryPolicy;
    ///
    /// let read = |maxmemory, policy: &str| RedisMemoryPolicy::Read { maxmemory, policy: policy.into() };
    /// assert!(read(100 << 20, "volatile-lru").may_evict_keys());
    /// assert!(!read(100 << 20, "noeviction").may_evict_keys());
    /// assert!(!read(0, "allkeys-lru").may_evict_keys());
    /// assert!(!RedisMemoryPolicy::Unknown.may_evict_keys());
    /// ```
    pub fn may_evict_keys(&self) -> bool {
        matches!(self, RedisMemoryPolicy::Read { maxmemory, policy }
            if *maxmemory > 0 && !policy.eq_ignore_ascii_case("noeviction"))
    }
}

/// When to read the policy, what was read, what was logged.
#[derive(Debug)]
pub(crate) struct PolicyWatch {
    /// A read is due (at the first success, and whenever Redis answers again).
    due: AtomicBool,
    found: Mutex<RedisMemoryPolicy>,
    /// The last finding logged: each distinct finding is logged once.
    logged: Mutex<RedisMemoryPolicy>,
}

impl PolicyWatch {
    pub(crate) fn new() -> PolicyWatch {
        PolicyWatch {
            due: AtomicBool::new(true),
            found: Mutex::new(RedisMemoryPolicy::NotChecked),
            logged: Mutex::new(RedisMemoryPolicy::NotChecked),
        }
    }

    /// Redis answered again (after an outage or a reconnection): read the policy again.
    pub(crate) fn mark_due(&self) {
        self.due.store(true, Ordering::Relaxed);
    }

    /// Whether a read is due (and the caller makes it); read-only when none is.
    pub(crate) fn take_due(&self) -> bool {
        self.due.load(Ordering::Relaxed) && self.due.swap(false, Ordering::Relaxed)
    }

    pub(crate) fn found(&self) -> RedisMemoryPolicy {
        self.found
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the policy over `conn` (within `timeout`), records it and logs it if new.
    pub(crate) async fn read(
        &self,
        conn: &ConnectionManager,
        timeout: std::time::Duration,
        prefix: &str,
    ) -> RedisMemoryPolicy {
        let mut conn = conn.clone();
        let read = async {
            let maxmemory = config_get(&mut conn, "maxmemory").await?;
            let policy = config_get(&mut conn, "maxmemory-policy").await?;
            let maxmemory = maxmemory.parse::<u64>().map_err(|_| {
                Failure::Refused(format!("maxmemory {maxmemory:?} is not a byte count"))
            })?;
            Ok(RedisMemoryPolicy::Read { maxmemory, policy })
        };
        let (found, error) = match tokio::time::timeout(timeout, read).await {
            Ok(Ok(found)) => (found, None),
            Ok(Err(Failure::Refused(e))) => (RedisMemoryPolicy::Unknown, Some(e)),
            Ok(Err(Failure::Connection)) | Err(_) => {
                // Not an answer about the policy: read again at the next success.
                self.mark_due();
                return self.found();
            }
        };
        *self.found.lock().unwrap_or_else(PoisonError::into_inner) = found.clone();
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        if *logged != found {
            log(&found, error.as_deref(), prefix);
            *logged = found.clone();
        }
        found
    }
}

/// Why the policy was not read.
enum Failure {
    /// Redis answered, but not with the setting (CONFIG disabled, renamed or denied).
    Refused(String),
    /// The connection failed: no answer at all.
    Connection,
}

/// The value of one `CONFIG GET name`.
async fn config_get(conn: &mut ConnectionManager, name: &str) -> Result<String, Failure> {
    let reply: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(conn)
        .await
        .map_err(|e| {
            if e.is_connection_dropped() || e.is_io_error() || e.is_unrecoverable_error() {
                Failure::Connection
            } else {
                Failure::Refused(e.to_string())
            }
        })?;
    match &reply[..] {
        [key, value] if key.eq_ignore_ascii_case(name) => Ok(value.clone()),
        _ => Err(Failure::Refused(format!(
            "CONFIG GET {name} returned {} values",
            reply.len()
        ))),
    }
}

fn log(found: &RedisMemoryPolicy, error: Option<&str>, prefix: &str) {
    match found {
        RedisMemoryPolicy::Read { maxmemory, policy } if found.may_evict_keys() => {
            tracing::warn!(
                policy_check = "may_evict",
                prefix = %prefix,
                maxmemory,
                policy = %policy,
                "Redis may evict rate-limit keys (maxmemory is set and maxmemory-policy is not \
                 noeviction): an evicted key is a reset limit, and a flood of new keys (random \
                 credentials) can evict clients' exhausted keys. Set maxmemory-policy noeviction \
                 (Redis then refuses writes at its cap and the store falls back) and size \
                 maxmemory for your keys"
            );
        }
        RedisMemoryPolicy::Read { maxmemory, policy } => {
            tracing::debug!(
                policy_check = "safe",
                prefix = %prefix,
                maxmemory,
                policy = %policy,
                "Redis eviction policy checked: rate-limit keys are not evicted"
            );
        }
        _ => {
            tracing::info!(
                policy_check = "unknown",
                prefix = %prefix,
                error = error.unwrap_or(""),
                "Redis eviction policy could not be checked (CONFIG GET refused): make sure \
                 maxmemory-policy is noeviction, or evicted rate-limit keys reset their limits"
            );
        }
    }
}
