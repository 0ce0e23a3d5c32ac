//! `/list`: the channels with people in them.

use talk_protocol::{Reply, SendAnswer};

use super::replied;
use crate::hub::Hub;

pub(super) fn run(hub: &Hub) -> SendAnswer {
    replied(Reply::List {
        channels: hub.list(),
    })
}
