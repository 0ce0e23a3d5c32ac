//! `/me <action>`: say what you do, shown as `* name action`.

use std::sync::Arc;

use talk_protocol::{EventKind, SendAnswer, SendId};

use super::{post, Error};
use crate::hub::{Hub, Session};

pub(super) async fn run(
    hub: &Hub,
    session: &Arc<Session>,
    changes: tokio::sync::MutexGuard<'_, ()>,
    send_id: &SendId,
    action: &str,
    max_chars: usize,
) -> Result<SendAnswer, Error> {
    post(
        hub,
        session,
        changes,
        send_id,
        action,
        max_chars,
        |text, id| EventKind::Me { text, id },
    )
    .await
}
