//! `/color <rrggbb>`: change the color of your name.

use std::sync::Arc;

use talk_protocol::{Color, Reply, SendAnswer};

use super::{replied_at, Error};
use crate::hub::{Hub, Session};

pub(super) const USAGE: &str = "/color <rrggbb>";

pub(super) async fn run(
    hub: &Hub,
    session: &Arc<Session>,
    color: Color,
) -> Result<SendAnswer, Error> {
    let seq = hub.recolor(session, color).await?;
    Ok(replied_at(
        seq,
        Reply::Color {
            color: color.to_string(),
        },
    ))
}
