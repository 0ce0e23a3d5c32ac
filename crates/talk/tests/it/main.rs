//! Tests of the `talk` binary as users and operators run it: the real
//! process (served, killed, restarted, limited), the terminal client in
//! pseudo-terminals, the load generator, real proxies and real browsers,
//! and the house rules of the tree. One test binary, so that Cargo links
//! the tests once.

mod bench;
mod chat;
mod client_restart;
mod e2e;
mod open_files;
mod proxies;
mod server_process;
mod store_full;
mod support;
mod tidy;
