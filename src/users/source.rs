//! [`UserSource`]: how the per-user layer gets each user's token source.

use crate::source::TokenSource;

/// Makes the [`TokenSource`] of one user, when the per-user layer first sees them (or sees
/// them again after their slot was evicted).
///
/// [`StoredUsers`](crate::users::StoredUsers) is the ready-made one; a closure `Fn(&str) -> impl TokenSource` works too.
pub trait UserSource: Send + Sync + 'static {
    /// The source type.
    type Source: TokenSource;

    /// The token source of the user with `open_id`.
    fn source_for(&self, open_id: &str) -> Self::Source;

    /// A check the per-user layer runs before it evicts the slot of `source`: while it returns
    /// true, the slot is kept (past the slot bound if need be), because dropping it would lose
    /// state, e.g. a refreshed pair not yet written or a refresh in flight. `None` (the default):
    /// the slot may be evicted whenever it is unused.
    fn keep_slot(&self, source: &Self::Source) -> Option<KeepSlot> {
        let _ = source;
        None
    }
}

/// The check of [`UserSource::keep_slot`]: true while the slot must not be evicted.
pub type KeepSlot = Box<dyn Fn() -> bool + Send + Sync>;

impl<F, T> UserSource for F
where
    F: Fn(&str) -> T + Send + Sync + 'static,
    T: TokenSource,
{
    type Source = T;

    fn source_for(&self, open_id: &str) -> T {
        self(open_id)
    }
}
