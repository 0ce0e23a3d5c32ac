//! `/who`: the people in your channel.

use talk_protocol::{Reply, SendAnswer};

use super::replied;
use crate::hub::{Hub, Session};

pub(super) fn run(hub: &Hub, session: &Session) -> SendAnswer {
    let (channel, members) = hub.who(session);
    replied(Reply::Who {
        channel: channel.as_str().to_owned(),
        members,
    })
}
