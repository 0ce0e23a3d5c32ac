//! What a person can send: a message, or a command such as `/join games`.
//!
//! `Command::parse` turns a text into a `Command`; each command runs in its
//! own file. The reply goes back in the answer to the request that sent it.

mod color;
mod help;
mod join;
mod list;
mod me;
mod nick;
mod who;

use std::sync::Arc;

use talk_protocol::{ChannelName, Color, EventKind, InvalidValue, Name, SendAnswer, SendId};

use crate::hub::{self, Hub, MayCreate, Session};

/// What a send may do, as the server's settings and rate limits say.
#[derive(Clone, Copy)]
pub(crate) struct Limits<'check> {
    /// The longest message, in characters.
    pub(crate) max_chars: usize,
    /// Whether the client may create a channel now.
    pub(crate) may_create: MayCreate<'check>,
}

/// What can go wrong with a send.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The text is empty after trimming.
    #[error("there is nothing to send")]
    EmptyMessage,
    /// The text is over the limit.
    #[error("messages are at most {max} characters")]
    MessageTooLong {
        /// The limit.
        max: usize,
    },
    /// Not a command.
    #[error("{command} is not a command; the commands are {}", help::COMMAND_NAMES)]
    UnknownCommand {
        /// The word typed.
        command: String,
    },
    /// A command's argument breaks the rules.
    #[error("{value} (usage: {usage})")]
    Invalid {
        /// What was wrong.
        value: InvalidValue,
        /// How to type the command.
        usage: &'static str,
    },
    /// The hub refused.
    #[error(transparent)]
    Hub(#[from] hub::Error),
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Join(ChannelName),
    Exit,
    List,
    Who,
    Nick(Name),
    Color(Color),
    Me(String),
    Help,
}

impl Command {
    /// Parses a text that starts with `/`.
    pub(crate) fn parse(text: &str) -> Result<Command, Error> {
        let (word, argument) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let argument = argument.trim();
        let invalid = |usage| move |value| Error::Invalid { value, usage };
        Ok(match word.to_ascii_lowercase().as_str() {
            "/join" => Command::Join(ChannelName::parse(argument).map_err(invalid(join::USAGE))?),
            "/exit" => Command::Exit,
            "/list" => Command::List,
            "/who" => Command::Who,
            "/nick" => Command::Nick(Name::parse(argument).map_err(invalid(nick::USAGE))?),
            "/color" => Command::Color(Color::parse(argument).map_err(invalid(color::USAGE))?),
            "/me" if argument.is_empty() => return Err(Error::EmptyMessage),
            "/me" => Command::Me(argument.to_owned()),
            "/help" => Command::Help,
            _ => {
                return Err(Error::UnknownCommand {
                    command: word.chars().take(32).collect(),
                })
            }
        })
    }
}

/// Runs a send: posts a message, or runs a command. `//text` posts `/text`.
pub(crate) async fn execute(
    hub: &Hub,
    session: &Arc<Session>,
    send_id: &SendId,
    text: &str,
    limits: Limits<'_>,
) -> Result<SendAnswer, Error> {
    let max_chars = limits.max_chars;
    let changes = session.changes.lock().await;
    // It may have ended while this waited for its turn.
    if session.has_ended() {
        return Err(hub::Error::UnknownSession.into());
    }
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::EmptyMessage);
    }
    if text.starts_with("//") || !text.starts_with('/') {
        let text = text
            .strip_prefix('/')
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(text);
        return post(
            hub,
            session,
            changes,
            send_id,
            text,
            max_chars,
            |text, id| EventKind::Message { text, id },
        )
        .await;
    }
    match Command::parse(text)? {
        Command::Join(channel) => join::run(hub, session, channel, limits.may_create).await,
        Command::Exit => {
            let lobby = ChannelName::default_channel();
            join::run(hub, session, lobby, limits.may_create).await
        }
        Command::List => Ok(list::run(hub)),
        Command::Who => Ok(who::run(hub, session)?),
        Command::Nick(name) => nick::run(hub, session, name).await,
        Command::Color(color) => color::run(hub, session, color).await,
        Command::Me(action) => me::run(hub, session, changes, send_id, &action, max_chars).await,
        Command::Help => Ok(help::run()),
    }
}

/// Posts `text` as the event `kind` builds, after checking its length.
///
/// The session's `changes` are let go once the event has its position and
/// is queued, before its commit: holding them through the commit (and the
/// wait for the runtime to come back to the send) made a session's sends
/// wait for each other, and a session sending 20 messages a second to a
/// busy server saw acknowledgements held for 250 ms to 1 s.
async fn post(
    hub: &Hub,
    session: &Arc<Session>,
    changes: tokio::sync::MutexGuard<'_, ()>,
    send_id: &SendId,
    text: &str,
    max_chars: usize,
    kind: impl FnOnce(String, String) -> EventKind,
) -> Result<SendAnswer, Error> {
    if text.chars().count() > max_chars {
        return Err(Error::MessageTooLong { max: max_chars });
    }
    let kind = kind(text.to_owned(), send_id.as_str().to_owned());
    let queued = hub.post(session, send_id.as_str(), kind);
    drop(changes);
    let (seq, duplicate) = queued.committed().await?;
    Ok(SendAnswer {
        ok: true,
        seq: Some(seq),
        duplicate,
        reply: None,
    })
}

/// A successful answer carrying a command's reply and the position of the
/// event the command posted, so a client can order the two.
fn replied_at(seq: u64, reply: talk_protocol::Reply) -> SendAnswer {
    SendAnswer {
        seq: Some(seq),
        ..replied(reply)
    }
}

/// A successful answer carrying a command's reply.
fn replied(reply: talk_protocol::Reply) -> SendAnswer {
    SendAnswer {
        ok: true,
        seq: None,
        duplicate: false,
        reply: Some(reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<Command, &str>) {
        let parsed = Command::parse(text).map_err(|error| error.to_string());
        match (&parsed, &expected) {
            (Ok(command), Ok(want)) => assert_eq!(command, want, "{text:?}"),
            (Err(message), Err(fragment)) => {
                assert!(message.contains(fragment), "{text:?}: {message}")
            }
            _ => panic!("{text:?}: got {parsed:?}, wanted {expected:?}"),
        }
    }

    #[test]
    fn parses_every_command() {
        check(
            "/join Games",
            Ok(Command::Join(ChannelName::parse("games").unwrap())),
        );
        check(
            "/JOIN  dev ",
            Ok(Command::Join(ChannelName::parse("dev").unwrap())),
        );
        check("/exit", Ok(Command::Exit));
        check("/list", Ok(Command::List));
        check("/who", Ok(Command::Who));
        check("/nick ada", Ok(Command::Nick(Name::parse("ada").unwrap())));
        check(
            "/color #66ccff",
            Ok(Command::Color(Color::parse("66ccff").unwrap())),
        );
        check("/me waves  hello", Ok(Command::Me("waves  hello".into())));
        check("/help", Ok(Command::Help));
    }

    /// A command that waited for its turn behind a `leave` finds its
    /// session ended, and does nothing: no name kept, no member left behind.
    /// On this single-threaded runtime each task spawned runs, up to its
    /// wait for the session's turn, at the next `yield_now`.
    #[tokio::test]
    async fn r22_5_commands_queued_behind_a_leave_find_their_session_ended() {
        let data = tempfile::tempdir().unwrap();
        let hub = Arc::new(Hub::for_tests(data.path()));
        let lobby = ChannelName::default_channel();
        let ada = hub
            .start_session(
                Some(Name::parse("ada").unwrap()),
                None,
                lobby.clone(),
                &|| Ok(()),
            )
            .await
            .unwrap()
            .session;
        let turn = ada.changes.lock().await;
        let leaving = tokio::spawn({
            let (hub, ada) = (hub.clone(), ada.clone());
            async move {
                hub.end_session(&ada, talk_protocol::LeaveReason::Quit)
                    .await
            }
        });
        tokio::task::yield_now().await;
        let commands: Vec<_> = ["/nick admin", "/join games", "hello", "/who"]
            .into_iter()
            .map(|text| {
                let (hub, ada) = (hub.clone(), ada.clone());
                let id = SendId::parse(&format!("id-{}", text.len())).unwrap();
                let limits = Limits {
                    max_chars: 100,
                    may_create: &|| Ok(()),
                };
                tokio::spawn(async move { execute(&hub, &ada, &id, text, limits).await })
            })
            .collect();
        tokio::task::yield_now().await;
        drop(turn);
        leaving.await.unwrap().unwrap();
        for command in commands {
            let refused = command.await.unwrap();
            assert!(
                matches!(refused, Err(Error::Hub(hub::Error::UnknownSession))),
                "{refused:?}"
            );
        }
        let admin = hub
            .start_session(Some(Name::parse("admin").unwrap()), None, lobby, &|| Ok(()))
            .await
            .unwrap();
        assert!(!admin.name_was_taken, "the name was not kept");
        let channels: Vec<_> = hub.list().into_iter().map(|info| info.name).collect();
        assert_eq!(channels, ["lobby"], "no member left behind in games");
        let ended_again = hub
            .end_session(&ada, talk_protocol::LeaveReason::Quit)
            .await;
        assert!(matches!(ended_again, Err(hub::Error::UnknownSession)));
    }

    #[test]
    fn explains_what_is_wrong() {
        check("/join", Err("usage: /join <channel>"));
        check("/join a b", Err("channel names are"));
        check("/nick", Err("usage: /nick <name>"));
        check("/color red", Err("six hex digits"));
        check("/color 000000", Err("too dark"));
        check("/me", Err("nothing to send"));
        check(
            "/dance",
            Err("/dance is not a command; the commands are /join"),
        );
    }
}
