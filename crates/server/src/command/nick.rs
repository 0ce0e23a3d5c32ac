//! `/nick <name>`: take another name, if nobody online has it.

use std::sync::Arc;

use talk_protocol::{Name, Reply, SendAnswer};

use super::{replied_at, Error};
use crate::hub::{Hub, Session};

pub(super) const USAGE: &str = "/nick <name>";

pub(super) async fn run(
    hub: &Hub,
    session: &Arc<Session>,
    name: Name,
) -> Result<SendAnswer, Error> {
    let seq = hub.rename(session, name.clone()).await?;
    Ok(replied_at(
        seq,
        Reply::Nick {
            name: name.as_str().to_owned(),
        },
    ))
}
