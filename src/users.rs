//! Per-user tokens (work in progress on this branch).
