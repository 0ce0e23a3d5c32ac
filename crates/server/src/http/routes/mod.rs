//! The handlers, one file per group of paths.

pub(crate) mod assets;
pub(crate) mod broadcast;
pub(crate) mod ops;
pub(crate) mod poll;
