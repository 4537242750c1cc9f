//! When the next refresh may run after failures: exponential back-off with jitter, a cap, a
//! shorter cap while no token is usable, and a failure count that decays after quiet.

use std::time::Duration;

use tokio::time::Instant;

use super::config::CacheConfig;

/// The failures since the last success, and when the last one happened.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    count: u32,
    last_at: Option<Instant>,
}

impl Failures {
    /// Forgets the failures (after a success).
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// Records a failure at `now` and returns how long to wait before the next attempt.
    ///
    /// - A rate-limit answer waits the whole cap.
    /// - Otherwise the wait doubles per failure from the floor up to the cap (equal jitter:
    ///   half fixed, half random, never below the floor).
    /// - While no token is usable (`token_usable` false) the wait is at most `wait_budget`, so
    ///   a request that finds no token can always wait for the next attempt instead of failing
    ///   at once.
    /// - After a quiet period of twice the cap without a failure the count starts again, so an
    ///   old outage does not make the first failure of a new one wait the cap.
    pub(crate) fn record(
        &mut self,
        now: Instant,
        cfg: &CacheConfig,
        rate_limited: bool,
        token_usable: bool,
        wait_budget: Duration,
    ) -> Duration {
        let quiet = cfg.backoff_cap.saturating_mul(2);
        if self
            .last_at
            .is_some_and(|t| now.saturating_duration_since(t) > quiet)
        {
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.last_at = Some(now);
        if rate_limited {
            return cfg.backoff_cap;
        }
        let cap = if token_usable {
            cfg.backoff_cap
        } else {
            cfg.backoff_cap.min(wait_budget)
        };
        let floor = cfg.backoff_floor.min(cap);
        let exp = self.count.saturating_sub(1).min(20);
        let full = cfg.backoff_floor.saturating_mul(1 << exp).min(cap);
        (full / 2 + random_up_to(full / 2)).max(floor)
    }
}

/// A random duration in `[0, max]`; not for secrets.
pub(crate) fn random_up_to(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CacheConfig {
        CacheConfig {
            backoff_floor: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            ..CacheConfig::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_doubles_to_the_cap_and_decays_after_quiet() {
        let cfg = cfg();
        let mut f = Failures::default();
        let budget = Duration::from_secs(30);
        let mut last = Duration::ZERO;
        for _ in 0..10 {
            last = f.record(Instant::now(), &cfg, false, true, budget);
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert!(last >= Duration::from_secs(30), "{last:?}");
        tokio::time::advance(Duration::from_secs(3600)).await;
        let first = f.record(Instant::now(), &cfg, false, true, budget);
        assert!(first <= Duration::from_secs(1), "{first:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_usable_token_the_wait_fits_the_budget_except_when_rate_limited() {
        let cfg = cfg();
        let mut f = Failures::default();
        let budget = Duration::from_secs(30);
        for _ in 0..10 {
            let d = f.record(Instant::now(), &cfg, false, false, budget);
            assert!(d <= budget, "{d:?}");
        }
        assert_eq!(
            f.record(Instant::now(), &cfg, true, false, budget),
            cfg.backoff_cap
        );
    }
}
