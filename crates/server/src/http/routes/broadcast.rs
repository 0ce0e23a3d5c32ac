//! `POST /broadcast`: start a session, send a message or command, ask who
//! is in the channel, leave; for either front.

use std::net::IpAddr;
use std::time::Instant;

use talk_protocol::{
    BroadcastRequest, ChannelName, Color, LeaveReason, Name, SendAnswer, SendId, StartAnswer,
    WhoAnswer,
};

use crate::http::error::ApiError;
use crate::http::state::App;
use crate::{command, hub};

/// Answers one `start`, `send`, `who` or `leave` from the client at `address`.
pub(crate) async fn answer(
    app: &App,
    address: IpAddr,
    request: BroadcastRequest,
) -> Result<Vec<u8>, ApiError> {
    match request {
        BroadcastRequest::Start {
            name,
            color,
            channel,
        } => {
            app.limits
                .check_start(address)
                .map_err(|retry_after| ApiError::TooManySessions { retry_after })?;
            let name = name.as_deref().map(Name::parse).transpose()?;
            let color = color.as_deref().map(Color::parse).transpose()?;
            let channel = match channel {
                Some(channel) => ChannelName::parse(&channel)?,
                None => ChannelName::default_channel(),
            };
            let asked_name = name.as_ref().map(|name| name.as_str().to_owned());
            let may_create = || {
                app.limits
                    .check_new_channel(None, address)
                    .map_err(|retry_after| hub::Error::TooManyChannels { retry_after })
            };
            let started = app
                .hub
                .start_session(name, color, channel, &may_create)
                .await?;
            let notice = match asked_name {
                Some(asked) if started.name_was_taken => Some(format!(
                    "the name {asked} is taken; you are {} (try /nick)",
                    started.name.as_str()
                )),
                _ => None,
            };
            let answer = StartAnswer {
                token: started.session.token.to_string(),
                name: started.name.as_str().to_owned(),
                color: started.color.to_string(),
                channel: started.channel.as_str().to_owned(),
                poll_timeout_ms: app.config.poll_timeout.as_millis() as u64,
                notice,
            };
            Ok(talk_protocol::to_json(&answer))
        }
        BroadcastRequest::Send { token, id, text } => {
            let started = Instant::now();
            let session = app.hub.session(&token)?;
            app.limits
                .check_send(&session.token)
                .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
            let id = SendId::parse(&id)?;
            let may_create = || {
                app.limits
                    .check_new_channel(Some(&session.token), address)
                    .map_err(|retry_after| hub::Error::TooManyChannels { retry_after })
            };
            let limits = command::Limits {
                max_chars: app.config.max_message_chars,
                may_create: &may_create,
            };
            let answer = command::execute(&app.hub, &session, &id, &text, limits).await?;
            app.metrics
                .send_seconds
                .observe(started.elapsed().as_secs_f64());
            Ok(talk_protocol::to_json(&answer))
        }
        BroadcastRequest::Who { token } => {
            // Not a send: no send from the session's bucket, and no wait
            // for the session's turn, so a client refreshing its member
            // list neither slows nor is slowed by what the person types.
            let session = app.hub.session(&token)?;
            let (channel, members) = app.hub.who(&session)?;
            let answer = WhoAnswer {
                channel: channel.as_str().to_owned(),
                members,
            };
            Ok(talk_protocol::to_json(&answer))
        }
        BroadcastRequest::Leave { token } => {
            let session = app.hub.session(&token)?;
            app.hub.end_session(&session, LeaveReason::Quit).await?;
            let answer = SendAnswer {
                ok: true,
                seq: None,
                duplicate: false,
                reply: None,
            };
            Ok(talk_protocol::to_json(&answer))
        }
    }
}
