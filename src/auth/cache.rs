//! The in-memory key and merchant cache, kept honest across instances by PostgreSQL LISTEN/NOTIFY, and the
//! `last_used_at` recorder that turns per-request "touches" into one batched UPDATE.
//!
//! Triggers on `public.api_keys`, `public.merchants` and `public.tenant_migrations` send `points_auth`
//! notifications (`key:<id>` / `merchant:<id>`); [`run_listener`] drops the matching entries, so revocation,
//! rotation and suspension reach every instance within milliseconds. Two backstops: entries live at most
//! `ttl`, and while the listener is disconnected the cache is bypassed entirely (and cleared on reconnect), so a
//! missed notification can never keep a revoked key alive. Lookups that raced an invalidation are not cached
//! (the generation counter), so a stale row read just before a notification cannot be re-inserted after it.
//! Expiry and status are checked on every request by the caller; the cache only saves the query.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::{api_keys::KeyAccessRow, merchants::MerchantAccessRow};

/// The notification channel the triggers use.
pub const AUTH_CHANNEL: &str = "points_auth";
/// Bound on cached keys and merchants; at the bound the cache is cleared (simple and safe).
const CACHE_ENTRIES_MAX: usize = 100_000;

type Entry<T> = (Instant, Arc<T>);

/// Cached key and merchant access rows.
pub struct AuthCache {
    ttl: Duration,
    keys: RwLock<HashMap<[u8; 32], Entry<KeyAccessRow>>>,
    merchants: RwLock<HashMap<Uuid, Entry<MerchantAccessRow>>>,
    generation: AtomicU64,
    listening: AtomicBool,
}

impl AuthCache {
    pub fn new(ttl: Duration) -> AuthCache {
        AuthCache {
            ttl,
            keys: RwLock::default(),
            merchants: RwLock::default(),
            generation: AtomicU64::new(0),
            listening: AtomicBool::new(false),
        }
    }

    fn usable(&self) -> bool {
        self.listening.load(Ordering::Acquire) && !self.ttl.is_zero()
    }

    /// The invalidation generation; pass it back to the insert of what a lookup found.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn key(&self, key_hash: &[u8; 32]) -> Option<Arc<KeyAccessRow>> {
        if !self.usable() {
            return None;
        }
        let keys = self
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        keys.get(key_hash)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, row)| row.clone())
    }

    pub fn merchant(&self, merchant_id: Uuid) -> Option<Arc<MerchantAccessRow>> {
        if !self.usable() {
            return None;
        }
        let merchants = self
            .merchants
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        merchants
            .get(&merchant_id)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, row)| row.clone())
    }

    /// Caches a key row read at `generation`, unless an invalidation happened since.
    pub fn insert_key(
        &self,
        key_hash: [u8; 32],
        row: KeyAccessRow,
        generation: u64,
    ) -> Arc<KeyAccessRow> {
        let row = Arc::new(row);
        if self.usable() {
            let mut keys = self
                .keys
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if self.generation() == generation {
                if keys.len() >= CACHE_ENTRIES_MAX {
                    keys.clear();
                }
                keys.insert(key_hash, (Instant::now(), row.clone()));
            }
        }
        row
    }

    pub fn insert_merchant(
        &self,
        row: MerchantAccessRow,
        generation: u64,
    ) -> Arc<MerchantAccessRow> {
        let row = Arc::new(row);
        if self.usable() {
            let mut merchants = self
                .merchants
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if self.generation() == generation {
                if merchants.len() >= CACHE_ENTRIES_MAX {
                    merchants.clear();
                }
                merchants.insert(row.merchant_id, (Instant::now(), row.clone()));
            }
        }
        row
    }

    /// Drops a key (by id) from the cache; called on notification and by the instance that changed it.
    pub fn invalidate_key(&self, key_id: Uuid) {
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        keys.retain(|_, (_, row)| row.key_id != key_id);
    }

    pub fn invalidate_merchant(&self, merchant_id: Uuid) {
        let mut merchants = self
            .merchants
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        merchants.remove(&merchant_id);
    }

    pub fn clear(&self) {
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut merchants = self
            .merchants
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        keys.clear();
        merchants.clear();
    }

    fn set_listening(&self, listening: bool) {
        self.clear();
        self.listening.store(listening, Ordering::Release);
    }

    /// Applies one `points_auth` payload.
    pub fn apply_notification(&self, payload: &str) {
        match payload.split_once(':') {
            Some(("key", id)) => match Uuid::parse_str(id) {
                Ok(key_id) => self.invalidate_key(key_id),
                Err(_) => self.clear(),
            },
            Some(("merchant", id)) => match Uuid::parse_str(id) {
                Ok(merchant_id) => self.invalidate_merchant(merchant_id),
                Err(_) => self.clear(),
            },
            _ => self.clear(),
        }
    }
}

/// Listens on [`AUTH_CHANNEL`] until `shutdown`, reconnecting with a bounded backoff. The cache is only used while
/// this listener is connected.
pub async fn run_listener(
    cache: Arc<AuthCache>,
    pg_config: tokio_postgres::Config,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = listen_once(&cache, &pg_config, &shutdown);
        let result = tokio::select! {
            result = session => result,
            () = shutdown.cancelled() => Ok(()),
        };
        cache.set_listening(false);
        if shutdown.is_cancelled() {
            return;
        }
        if let Err(error) = result {
            tracing::warn!(error = %crate::error::ErrorChain(&error), "auth listener disconnected; cache bypassed");
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {},
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen_once(
    cache: &AuthCache,
    pg_config: &tokio_postgres::Config,
    shutdown: &CancellationToken,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = pg_config.connect(tokio_postgres::NoTls).await?;
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    let _ = sender.send(Ok(notification.payload().to_owned()));
                }
                Ok(_) => {}
                Err(error) => {
                    let _ = sender.send(Err(error));
                    return;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {AUTH_CHANNEL}"))
        .await?;
    cache.set_listening(true);
    tracing::debug!("auth listener connected");
    let outcome = loop {
        tokio::select! {
            message = receiver.recv() => match message {
                Some(Ok(payload)) => cache.apply_notification(&payload),
                Some(Err(error)) => break Err(error),
                None => break Ok(()),
            },
            () = shutdown.cancelled() => break Ok(()),
        }
    };
    driver.abort();
    outcome
}

/// `last_used_at` kept in memory and written in batches, so authenticating never writes.
#[derive(Default)]
pub struct LastUsed {
    pending: Mutex<HashMap<Uuid, DateTime<Utc>>>,
}

impl LastUsed {
    pub fn touch(&self, key_id: Uuid) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pending.insert(key_id, Utc::now());
    }

    /// Writes what was touched since the last flush. On failure the times are kept for the next flush.
    pub async fn flush(
        &self,
        pool: &deadpool_postgres::Pool,
    ) -> Result<(), crate::error::ServiceError> {
        let batch: Vec<(Uuid, DateTime<Utc>)> = {
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            pending.drain().collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        let (key_ids, used_at): (Vec<Uuid>, Vec<DateTime<Utc>>) = batch.iter().copied().unzip();
        let result = async {
            let client = pool.get().await?;
            crate::store::api_keys::record_last_used(&**client, &key_ids, &used_at).await?;
            Ok::<_, crate::error::ServiceError>(())
        }
        .await;
        if result.is_err() {
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for (key_id, at) in batch {
                let entry = pending.entry(key_id).or_insert(at);
                *entry = (*entry).max(at);
            }
        }
        result
    }
}

/// Flushes `last_used` every `interval` and once more at shutdown.
pub async fn run_last_used_flusher(
    last_used: Arc<LastUsed>,
    pool: deadpool_postgres::Pool,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = crate::periodic::Ticks::new(interval, &shutdown);
    while ticks.next().await {
        if let Err(error) = last_used.flush(&pool).await {
            tracing::warn!(%error, "could not record last_used_at; will retry");
        }
    }
    if let Err(error) = last_used.flush(&pool).await {
        tracing::warn!(%error, "could not record last_used_at at shutdown");
    }
}
