//! Verdict cache: bounded LRU with a TTL that depends on the verdict (long for "signed",
//! short for "not signed" so a signature pushed after a denial is seen quickly).
//! moka's `entry().or_try_insert_with` gives single-flight: concurrent admissions of the
//! same digest wait for one registry round-trip. Registry errors are not cached.

use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

/// Normalised repository, digest, rule index: a signature lives in a repository, and
/// rules trust different signers.
pub type CacheKey = (String, String, usize);

/// A verified (or refuted) rule for one digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Who signed it.
    Verified(String),
    /// Verified, by a policy that reads the clock: kept only as long as a refutation,
    /// since the verdict can flip with time alone.
    VerifiedForNow(String),
    /// Why the signatures do not satisfy the rule.
    Rejected(String),
}

struct OutcomeExpiry {
    positive: Duration,
    negative: Duration,
}

impl Expiry<CacheKey, Outcome> for OutcomeExpiry {
    fn expire_after_create(&self, _: &CacheKey, value: &Outcome, _: Instant) -> Option<Duration> {
        Some(match value {
            Outcome::Verified(_) => self.positive,
            Outcome::VerifiedForNow(_) | Outcome::Rejected(_) => self.negative,
        })
    }
}

pub fn new(max_entries: u64, positive: Duration, negative: Duration) -> Cache<CacheKey, Outcome> {
    Cache::builder()
        .max_capacity(max_entries)
        .expire_after(OutcomeExpiry { positive, negative })
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn concurrent_lookups_share_one_computation() {
        let cache = new(10, Duration::from_secs(60), Duration::from_secs(1));
        let calls = Arc::new(AtomicUsize::new(0));
        let key: CacheKey = ("r.io/a".into(), "sha256:x".into(), 0);
        let lookups = (0..8).map(|_| {
            let (cache, calls, key) = (cache.clone(), calls.clone(), key.clone());
            async move {
                cache
                    .entry(key)
                    .or_try_insert_with(async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, String>(Outcome::Verified("k".into()))
                    })
                    .await
                    .map(|e| e.into_value())
            }
        });
        let results = futures::future::join_all(lookups).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(results
            .iter()
            .all(|r| r.as_ref().ok() == Some(&Outcome::Verified("k".into()))));
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let cache = new(10, Duration::from_secs(60), Duration::from_secs(1));
        let key: CacheKey = ("r.io/a".into(), "sha256:x".into(), 0);
        let first = cache
            .entry(key.clone())
            .or_try_insert_with(async { Err::<Outcome, _>("down") })
            .await;
        assert!(first.is_err());
        let second = cache
            .entry(key)
            .or_try_insert_with(async { Ok::<_, &str>(Outcome::Rejected("unsigned".into())) })
            .await
            .expect("computed again");
        assert!(second.is_fresh());
    }
}
