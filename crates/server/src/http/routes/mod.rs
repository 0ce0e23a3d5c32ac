//! The handlers, one file per group of paths; `chat.rs` is the router's
//! front to the chat's handlers (`poll.rs`, `broadcast.rs`), which the
//! lean path (`connection`) calls too.

pub(crate) mod assets;
pub(crate) mod broadcast;
pub(crate) mod chat;
pub(crate) mod ops;
pub(crate) mod poll;
