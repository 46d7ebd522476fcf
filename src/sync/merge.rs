//! The merge rule: defined in the store, which applies it where it writes revisions
//! ([`crate::store::merge`]); re-exported here where sync talks about it.

pub use crate::store::merge::*;
