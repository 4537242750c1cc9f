//! [`Lease`]: the right of one holder at a time to write a key's token.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::Error;

/// A lease on a key: while it lasts, its holder is the only one that may write the key's token.
///
/// A lease is an id of 128 random bits with a lifetime. It ends when its holder releases it, or
/// by itself after its lifetime, so a holder that dies costs the others at most one lease time.
/// Its `Debug` shows its lifetime, never its id.
#[derive(Clone, PartialEq, Eq)]
pub struct Lease {
    id: String,
    ttl: Duration,
    acquired_at: Instant,
}

impl Lease {
    /// A new lease with a random id, lasting `ttl` from now. For [`TokenStore`](super::TokenStore) implementations.
    pub fn generate(ttl: Duration) -> Result<Self, Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
        let mut id = String::with_capacity(32);
        for b in bytes {
            id.push(char::from(HEX[usize::from(b >> 4)]));
            id.push(char::from(HEX[usize::from(b & 15)]));
        }
        Ok(Self {
            id,
            ttl,
            acquired_at: Instant::now(),
        })
    }

    /// The lease's random id (32 hex digits), as a store compares it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How long the lease lasts from when it was taken.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The monotonic instant at which the lease ends by itself.
    pub fn expires_at(&self) -> Instant {
        // Saturates: a huge `ttl` means "far in the future", never an overflow.
        crate::token::deadline(self.acquired_at, self.ttl)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("ttl", &self.ttl)
            .field(
                "remaining",
                &self.expires_at().saturating_duration_since(Instant::now()),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_debug_hides_the_id() {
        let lease = Lease::generate(Duration::from_secs(1)).unwrap();
        assert_eq!(lease.id().len(), 32);
        assert!(!format!("{lease:?}").contains(lease.id()));
    }
}
