//! `/who`: the people in your channel.

use talk_protocol::{Reply, SendAnswer};

use super::replied;
use crate::hub::{self, Hub, Session};

pub(super) fn run(hub: &Hub, session: &Session) -> Result<SendAnswer, hub::Error> {
    let (channel, members) = hub.who(session)?;
    Ok(replied(Reply::Who {
        channel: channel.as_str().to_owned(),
        members,
    }))
}
