//! Metrics (feature `metrics`): the names, the labels and the one function per event that the
//! cache, the response future, the shared source and the webhook layers call. Through the
//! [`metrics`](https://docs.rs/metrics) facade, so any exporter works (Prometheus, StatsD, …);
//! without the feature every function here is an empty inline function.
//!
//! No label carries a secret or an unbounded value: the source is named by its type (without
//! its path and generics), the family and outcome by a fixed word, and no `open_id` appears.
//!
//! | metric | kind | labels | moves when |
//! | --- | --- | --- | --- |
//! | `douyin_auth_refreshes_total` | counter | `family`, `source`, `outcome` | a refresh finishes (`outcome`: `ok`, `error`) |
//! | `douyin_auth_refresh_duration_seconds` | histogram | `family`, `source`, `outcome` | a refresh finishes: how long it took |
//! | `douyin_auth_token_remaining_seconds` | gauge | `family`, `source` | a token is published (a refresh, or a newer token read from the store): its remaining lifetime at that moment, not counting down after (for users, the user refreshed last) |
//! | `douyin_auth_token_expiry_timestamp_seconds` | gauge | `family`, `source` | the same: when that token expires, as a Unix time in seconds (`… - time()` is its remaining lifetime now) |
//! | `douyin_auth_backoffs_total` | counter | `family`, `source`, `reason` | a failed refresh starts a back-off (`reason`: `rate_limited`, `failure`) |
//! | `douyin_auth_stale_served_total` | counter | `family`, `source` | a stale token is served while a background refresh runs |
//! | `douyin_auth_token_waits_total` | counter | `outcome` | a request had no usable token and waited for the refresh (`ok`: it got one) |
//! | `douyin_auth_token_wait_seconds` | histogram | `outcome` | the same: how long it waited |
//! | `douyin_auth_expiry_answers_total` | counter | | the classifier says an answer means "expired or invalid token" |
//! | `douyin_auth_retries_total` | counter | | a request is sent a second time after such an answer |
//! | `douyin_auth_store_errors_total` | counter | `operation` | a `SharedSource`'s store call fails (`get`, `put`, the lease calls) |
//! | `douyin_auth_webhook_rejections_total` | counter | `kind`, `reason` | a webhook layer refuses a call (`kind`: `webhook`, `spi`; `reason`: `missing_signature`, `invalid_signature`, `too_large`, …, as in the logs) |
//!
//! `family` is `client` (the app's client token, `ClientCredentials`, also behind a
//! `SharedSource`), `user` (`UserTokens`, `StoredUser`), `business` (`BusinessTokens`),
//! `mini_app` (`MiniAppCredentials`), `mini_game` (`MiniGameCredentials`) or `other`; `source` is
//! the source's type
//! without its path and generics (`ClientCredentials`, `SharedSource`, `StoredUser`, `FnSource`).
//! No label carries a secret, an `open_id` or any other unbounded value. The tower layer and
//! `DouyinAuthMiddleware` (reqwest) record the same metrics: the cache's (refreshes, back-offs,
//! stale tokens served, the token's lifetime) and the request side's (waits, expiry answers,
//! retries).
//!
//! Install any recorder (here `metrics-exporter-prometheus` 0.18's, serving `GET /metrics`):
//!
//! ```ignore
//! metrics_exporter_prometheus::PrometheusBuilder::new()
//!     .with_http_listener(([0, 0, 0, 0], 9000))
//!     .install()?;
//! let layer = douyin_auth::DouyinAuthLayer::new(source); // records from here on
//! ```

/// Refreshes finished, by `family`, `source` and `outcome` (`ok`, `error`). Counter.
pub const REFRESHES: &str = "douyin_auth_refreshes_total";
/// How long refreshes took, in seconds, by `family`, `source` and `outcome`. Histogram.
pub const REFRESH_DURATION: &str = "douyin_auth_refresh_duration_seconds";
/// Back-offs entered after a failed refresh, by `family`, `source` and `reason`
/// (`rate_limited`, `failure`). Counter.
pub const BACKOFFS: &str = "douyin_auth_backoffs_total";
/// Stale tokens served while a background refresh runs, by `family` and `source`. Counter.
pub const STALE_SERVED: &str = "douyin_auth_stale_served_total";
/// The remaining lifetime, in seconds, of the token the cache published last (by a refresh, or
/// a newer token read from the store), as it was when it was published, by `family` and
/// `source` (for users: the user refreshed last). Gauge.
///
/// It is set when a token is published and does not count down between refreshes: right after
/// a refresh it reads the token's whole lifetime, and it reads the same until the next one.
/// For the lifetime left now, use [`TOKEN_EXPIRY`]: in PromQL,
/// `douyin_auth_token_expiry_timestamp_seconds - time()`.
pub const TOKEN_REMAINING: &str = "douyin_auth_token_remaining_seconds";
/// When the token the cache published last expires, as a Unix time in seconds (the Prometheus
/// idiom for expiries, like a certificate's `…_expiry_timestamp_seconds`), by `family` and
/// `source` (for users: the user refreshed last). Gauge, set with [`TOKEN_REMAINING`].
///
/// A dashboard computes the lifetime left from it, and an alert fires before the token runs
/// out: `douyin_auth_token_expiry_timestamp_seconds - time() < 600`. It is this host's wall
/// clock plus the remaining lifetime at publication.
pub const TOKEN_EXPIRY: &str = "douyin_auth_token_expiry_timestamp_seconds";
/// Requests sent a second time after an expired-token answer. Counter.
pub const RETRIES: &str = "douyin_auth_retries_total";
/// Answers the classifier said mean "expired or invalid token". Counter.
pub const EXPIRY_ANSWERS: &str = "douyin_auth_expiry_answers_total";
/// Requests that had no usable token and waited for a refresh, by `outcome` (`ok`, `error`).
/// Counter.
pub const TOKEN_WAITS: &str = "douyin_auth_token_waits_total";
/// How long those requests waited, in seconds, by `outcome`. Histogram.
pub const TOKEN_WAIT_DURATION: &str = "douyin_auth_token_wait_seconds";
/// Token store operations that failed, by `operation` (the store call: `get`, `put`, `lease`,
/// …). Counter.
pub const STORE_ERRORS: &str = "douyin_auth_store_errors_total";
/// Calls into the app the webhook layers refused, by `kind` (`webhook`, `spi`) and `reason`
/// (`missing_signature`, `invalid_signature`, `too_large`, …). Counter.
pub const WEBHOOK_REJECTIONS: &str = "douyin_auth_webhook_rejections_total";

/// Every metric name, for documentation and tests.
pub const ALL: [&str; 12] = [
    REFRESHES,
    REFRESH_DURATION,
    BACKOFFS,
    STALE_SERVED,
    TOKEN_REMAINING,
    TOKEN_EXPIRY,
    RETRIES,
    EXPIRY_ANSWERS,
    TOKEN_WAITS,
    TOKEN_WAIT_DURATION,
    STORE_ERRORS,
    WEBHOOK_REJECTIONS,
];

/// The token family of a source, from its full type name: `user` for a user's tokens
/// (`StoredUser`, `UserTokens`), `client` for the app's client token (`ClientCredentials`,
/// also behind a `SharedSource`), `other` for any other source.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn family(type_name: &str) -> &'static str {
    if type_name.contains("StoredUser") || type_name.contains("UserTokens") {
        "user"
    } else if type_name.contains("BusinessTokens") {
        "business"
    } else if type_name.contains("MiniAppCredentials") {
        "mini_app"
    } else if type_name.contains("MiniGameCredentials") {
        "mini_game"
    } else if type_name.contains("ClientCredentials") {
        "client"
    } else {
        "other"
    }
}

/// A source's labels (`family`, `source`), worked out once when its cache is made rather than
/// from its type name at every event (a stale token is served to every request until the
/// refresh lands). Empty without the feature.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SourceLabels {
    #[cfg(feature = "metrics")]
    family: &'static str,
    #[cfg(feature = "metrics")]
    source: &'static str,
}

impl SourceLabels {
    /// The labels of a source whose full type name is `full`.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn of(full: &'static str) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            family: family(full),
            #[cfg(feature = "metrics")]
            source: crate::source::short_type_name(full),
        }
    }
}

#[cfg(feature = "metrics")]
// Each front end and store calls its own functions; a build without one leaves those unused.
#[allow(dead_code)]
mod record {
    use std::future::Future;
    use std::time::Duration;

    use super::*;

    fn outcome(ok: bool) -> &'static str {
        if ok {
            "ok"
        } else {
            "error"
        }
    }

    pub(crate) fn refreshed(of: SourceLabels, remaining: Option<Duration>, took: Duration) {
        let outcome = outcome(remaining.is_some());
        let labels = [
            ("family", of.family),
            ("source", of.source),
            ("outcome", outcome),
        ];
        metrics::counter!(REFRESHES, &labels).increment(1);
        metrics::histogram!(REFRESH_DURATION, &labels).record(took.as_secs_f64());
        if let Some(left) = remaining {
            published(of, left);
        }
    }

    /// A token was published with `left` to live: its lifetime then and its expiry time.
    pub(crate) fn published(of: SourceLabels, left: Duration) {
        let (family, short) = (of.family, of.source);
        metrics::gauge!(TOKEN_REMAINING, "family" => family, "source" => short)
            .set(left.as_secs_f64());
        // The wall clock only here, for the dashboards; the cache's deadlines are monotonic.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        metrics::gauge!(TOKEN_EXPIRY, "family" => family, "source" => short)
            .set((now + left).as_secs_f64());
    }

    pub(crate) fn backoff(of: SourceLabels, rate_limited: bool) {
        let reason = if rate_limited {
            "rate_limited"
        } else {
            "failure"
        };
        metrics::counter!(
            BACKOFFS,
            "family" => of.family,
            "source" => of.source,
            "reason" => reason
        )
        .increment(1);
    }

    pub(crate) fn stale_served(of: SourceLabels) {
        metrics::counter!(
            STALE_SERVED,
            "family" => of.family,
            "source" => of.source
        )
        .increment(1);
    }

    pub(crate) fn retry_sent() {
        metrics::counter!(RETRIES).increment(1);
    }

    pub(crate) fn expiry_answer() {
        metrics::counter!(EXPIRY_ANSWERS).increment(1);
    }

    pub(crate) async fn waited_for_token<F, T, E>(wait: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let started = tokio::time::Instant::now();
        let result = wait.await;
        let outcome = outcome(result.is_ok());
        metrics::counter!(TOKEN_WAITS, "outcome" => outcome).increment(1);
        metrics::histogram!(TOKEN_WAIT_DURATION, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result
    }

    pub(crate) fn store_error(operation: &str) {
        metrics::counter!(STORE_ERRORS, "operation" => operation.to_owned()).increment(1);
    }

    pub(crate) fn webhook_rejected(kind: &'static str, reason: &'static str) {
        metrics::counter!(WEBHOOK_REJECTIONS, "kind" => kind, "reason" => reason).increment(1);
    }
}

#[cfg(not(feature = "metrics"))]
#[allow(dead_code)]
mod record {
    use std::future::Future;
    use std::time::Duration;

    use super::SourceLabels;

    #[inline(always)]
    pub(crate) fn refreshed(_: SourceLabels, _: Option<Duration>, _: Duration) {}
    #[inline(always)]
    pub(crate) fn published(_: SourceLabels, _: Duration) {}
    #[inline(always)]
    pub(crate) fn backoff(_: SourceLabels, _: bool) {}
    #[inline(always)]
    pub(crate) fn stale_served(_: SourceLabels) {}
    #[inline(always)]
    pub(crate) fn retry_sent() {}
    #[inline(always)]
    pub(crate) fn expiry_answer() {}
    #[inline(always)]
    pub(crate) fn waited_for_token<F: Future>(wait: F) -> F {
        wait
    }
    #[inline(always)]
    pub(crate) fn store_error(_: &str) {}
    #[inline(always)]
    pub(crate) fn webhook_rejected(_: &'static str, _: &'static str) {}
}

#[allow(unused_imports)]
pub(crate) use record::*;
