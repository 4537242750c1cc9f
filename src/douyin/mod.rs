//! The Douyin Open Platform wire protocol: token endpoints, error codes, OAuth.

pub mod codes;
