//! The peer bench: the servers talk is compared with, as protocols of
//! talk's load generator (`talk_bench::Protocol`), so that `talk bench`'s
//! fan-out scenario drives them with the same pollers, senders and
//! accounting as talk, under identical conditions.
//!
//! [`Nchan`] is the nginx pub/sub module (`nchan`, configured by
//! `nchan/nginx.conf`), [`Socketio`] Socket.IO over its long-polling
//! transport (`socketio`, served by `socketio/server.js`). Both publish
//! through `POST /pub/<channel>` (`publisher`). The `talk-peers` binary
//! runs them from the command line.

mod nchan;
mod publisher;
mod socketio;

pub use nchan::{Nchan, NchanAnswer, NchanPollers, Subscriber as NchanSubscriber};
pub use publisher::{Accepts, PeerPublisher};
pub use socketio::{Delivery, Socketio, SocketioPollers, Subscriber as SocketioSubscriber};

use talk_bench::{Error, Scenario};

/// Refuses every scenario but the fan-out: a peer has no sessions to hold
/// (capacity) and the peer bench compares fan-outs only.
fn fanout_only(scenario: &Scenario) -> Result<(), Error> {
    match scenario {
        Scenario::Fanout(_) => Ok(()),
        _ => Err(Error::Config(
            "only the fan-out scenario can drive a peer other than talk".into(),
        )),
    }
}
