//! `/join <channel>` and `/exit`: move to another channel.

use std::sync::Arc;

use talk_protocol::{ChannelName, Reply, SendAnswer};

use super::{replied, Error};
use crate::hub::{Hub, MayCreate, Session};

pub(super) const USAGE: &str = "/join <channel>";

pub(super) async fn run(
    hub: &Hub,
    session: &Arc<Session>,
    channel: ChannelName,
    may_create: MayCreate<'_>,
) -> Result<SendAnswer, Error> {
    hub.switch_channel(session, channel.clone(), may_create)
        .await?;
    Ok(replied(Reply::Joined {
        channel: channel.as_str().to_owned(),
    }))
}
