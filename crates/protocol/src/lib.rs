//! The wire types of the talk protocol, version 1 (see `docs/protocol.md`).
//!
//! These are the only serde types of the project: the server, the client
//! library and every tool built on it speak through them, so the protocol
//! document and the code cannot drift apart silently.
//!
//! # Values a newer server may add
//!
//! Version 1 may grow new event types, leave reasons, reset reasons and
//! reply types (`docs/protocol.md`, "Versioning"). Each of these enums has
//! an `Unknown` variant that such a value decodes as, so that one new event
//! does not make a whole poll answer undecodable. Only the name chooses
//! `Unknown`: a known type with a missing or wrong field is still an error.
//! `Unknown` keeps nothing of the value it stands for (a client cannot show
//! what it does not know, and `Reset` and `LeaveReason` stay `Copy`), and it
//! encodes as `unknown`, a name the protocol reserves, which decodes as
//! `Unknown` again; so encoding never fails. Only decoding makes one: the
//! server never sends `unknown`.

mod cursor;
mod names;

pub use cursor::{Cursor, CursorParseError};
pub use names::{ChannelName, Color, InvalidValue, Name, SendId};

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;

/// The channel every session starts in and `/exit` goes back to.
pub const DEFAULT_CHANNEL: &str = "lobby";

/// A request to `POST /broadcast`, told apart by its `op` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum BroadcastRequest {
    /// Start a session; every field is a wish the server may refuse.
    Start {
        /// The name the person would like.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The color the person would like, `rrggbb`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        color: Option<String>,
        /// The channel to start in; the default channel when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
    },
    /// Say something, or run a command when the text starts with `/`.
    Send {
        /// The session's secret token.
        token: String,
        /// The client's id for this send, so that a retry is not posted twice.
        id: String,
        /// The text or command.
        text: String,
    },
    /// End the session now.
    Leave {
        /// The session's secret token.
        token: String,
    },
    /// Ask who is in the session's channel. Unlike the `/who` command it
    /// is not a send: it waits for no earlier send of the session and does
    /// not count toward the send rate limit, so a client can refresh its
    /// member list as often as its view changes.
    Who {
        /// The session's secret token.
        token: String,
    },
}

/// The body of `POST /poll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollRequest {
    /// The session's secret token.
    pub token: String,
    /// The channel the client's cursor belongs to; absent on the first poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Where the client is in that channel's stream; absent on the first poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Cursor>,
    /// Hold the poll at most this long (capped by the server's poll timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

/// The envelope every request may carry, read before the request itself.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Envelope {
    /// The protocol version the client speaks; 1 when absent.
    #[serde(default)]
    pub v: Option<u32>,
}

/// The answer to a successful `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartAnswer {
    /// The session's secret token: keep it, send it with every request.
    pub token: String,
    /// The name the session got.
    pub name: String,
    /// The color the session got.
    pub color: String,
    /// The channel the session is in.
    pub channel: String,
    /// The server's poll timeout, so a client can set its own HTTP timeout above it.
    pub poll_timeout_ms: u64,
    /// Why the session did not get what it asked for, for people to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// The answer to a successful `send` or `leave`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendAnswer {
    /// Always true; present so that every success looks alike.
    pub ok: bool,
    /// The position of the posted event in the session's channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// True when this id was posted before and this send changed nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub duplicate: bool,
    /// The reply to a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
}

/// The answer to a successful `who`: the same list as the `/who` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAnswer {
    /// The session's channel.
    pub channel: String,
    /// The people in it, by name.
    pub members: Vec<Member>,
}

/// The reply to a command, for the person who sent it only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// After `/join` and `/exit`: the session is in `channel` now.
    Joined {
        /// The channel joined.
        channel: String,
    },
    /// After `/list`.
    List {
        /// Channels with people in them, largest first.
        channels: Vec<ChannelInfo>,
    },
    /// After `/who`.
    Who {
        /// The session's channel.
        channel: String,
        /// The people in it, by name.
        members: Vec<Member>,
    },
    /// After `/nick`.
    Nick {
        /// The new name.
        name: String,
    },
    /// After `/color`.
    Color {
        /// The new color.
        color: String,
    },
    /// After `/help`.
    Help {
        /// Every command with a line about it.
        commands: Vec<CommandHelp>,
    },
    /// A reply of a type this build does not know, from a newer server:
    /// the command went through, and there is nothing here to show.
    #[serde(other)]
    Unknown,
}

/// A channel in a `/list` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// The channel's name.
    pub name: String,
    /// How many people are in it.
    pub members: usize,
}

/// A person in a `/who` reply or a `who` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The person's name.
    pub name: String,
    /// The person's color.
    pub color: String,
}

/// A command in a `/help` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandHelp {
    /// How to type it, e.g. `/join <name>`.
    pub usage: String,
    /// What it does.
    pub about: String,
}

/// The answer to `POST /poll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollAnswer {
    /// The session's channel now.
    pub channel: String,
    /// The cursor to send with the next poll.
    pub cursor: Cursor,
    /// The events after the request's cursor, oldest first.
    pub events: Vec<Event>,
    /// Present when the client must replace what it shows by `events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<Reset>,
    /// True when the server is going away: poll again after a short pause.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reconnect: bool,
}

/// Why a poll answer replaces the client's view instead of adding to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reset {
    /// The poll had no cursor.
    Start,
    /// The session is in another channel than the poll named.
    Switch,
    /// The cursor is outside the history window.
    Gap,
    /// The cursor is from an earlier life of the channel's history.
    Epoch,
    /// A reason this build does not know, from a newer server: the answer
    /// still replaces the view.
    #[serde(other)]
    Unknown,
}

impl Reset {
    /// The wire name, as in the `reset` field (`unknown` for `Unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reset::Start => "start",
            Reset::Switch => "switch",
            Reset::Gap => "gap",
            Reset::Epoch => "epoch",
            Reset::Unknown => "unknown",
        }
    }
}

/// One event of a channel's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The event's position in its channel's stream.
    pub seq: u64,
    /// When the server stored it, in milliseconds since 1970.
    pub ts: u64,
    /// The person's name at the time.
    pub from: String,
    /// The person's color at the time.
    pub color: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// The text of a `message` event; `None` for every other type.
    pub fn message_text(&self) -> Option<&str> {
        match &self.kind {
            EventKind::Message { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// What an event says happened, told apart by its `type` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A chat message.
    Message {
        /// The message, to be shown as text.
        text: String,
        /// The sender's id for it.
        id: String,
    },
    /// A `/me` action.
    Me {
        /// The action, to be shown as text after the name.
        text: String,
        /// The sender's id for it.
        id: String,
    },
    /// The person came into the channel.
    Join,
    /// The person went.
    Leave {
        /// Why.
        reason: LeaveReason,
    },
    /// The person changed name from `from` to `to`.
    Nick {
        /// The new name.
        to: String,
    },
    /// The person changed color to `color`.
    Color,
    /// An event of a type this build does not know, from a newer server:
    /// show nothing for it. It still has its place in the stream (`seq`).
    #[serde(other)]
    Unknown,
}

/// Why a person left a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// Switched to another channel.
    Exit,
    /// Ended the session.
    Quit,
    /// Stopped polling for longer than the grace period.
    Timeout,
    /// A reason this build does not know, from a newer server: the person
    /// went all the same.
    #[serde(other)]
    Unknown,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable code to match on, e.g. `unknown_session`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// For 429 answers: how long to wait before trying again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Encodes a value as the JSON the protocol sends.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain types cannot fail: no maps with non-string keys.
    serde_json::to_vec(value).expect("protocol types always serialize")
}

/// Decodes a JSON value of the protocol.
pub fn from_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Encodes a poll answer around events that are already encoded, so that a
/// server can encode each event once and splice it into many answers.
///
/// The result decodes as a [`PollAnswer`].
pub fn poll_answer_json<'a>(
    channel: &str,
    cursor: &Cursor,
    events: impl Iterator<Item = &'a [u8]>,
    reset: Option<Reset>,
    reconnect: bool,
) -> Vec<u8> {
    let mut json = Vec::with_capacity(128);
    json.extend_from_slice(b"{\"channel\":");
    serde_json::to_writer(&mut json, channel).expect("writing to a Vec cannot fail");
    json.extend_from_slice(b",\"cursor\":");
    serde_json::to_writer(&mut json, cursor).expect("writing to a Vec cannot fail");
    json.extend_from_slice(b",\"events\":[");
    for (index, event) in events.enumerate() {
        if index > 0 {
            json.push(b',');
        }
        json.extend_from_slice(event);
    }
    json.push(b']');
    if let Some(reset) = reset {
        json.extend_from_slice(b",\"reset\":\"");
        json.extend_from_slice(reset.as_str().as_bytes());
        json.push(b'"');
    }
    if reconnect {
        json.extend_from_slice(b",\"reconnect\":true");
    }
    json.push(b'}');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_event(json: &str, expected: EventKind) {
        let event: Event = from_json(json.as_bytes()).unwrap();
        assert_eq!(event.kind, expected);
        let again: Event = from_json(&to_json(&event)).unwrap();
        assert_eq!(again, event);
    }

    #[test]
    fn events_round_trip() {
        check_event(
            r#"{"seq":1,"ts":2,"from":"a","color":"ffffff","type":"message","text":"hi","id":"x"}"#,
            EventKind::Message {
                text: "hi".into(),
                id: "x".into(),
            },
        );
        check_event(
            r#"{"seq":1,"ts":2,"from":"a","color":"ffffff","type":"leave","reason":"timeout"}"#,
            EventKind::Leave {
                reason: LeaveReason::Timeout,
            },
        );
        check_event(
            r#"{"seq":1,"ts":2,"from":"a","color":"ffffff","type":"nick","to":"b"}"#,
            EventKind::Nick { to: "b".into() },
        );
        check_event(
            r#"{"seq":1,"ts":2,"from":"a","color":"ffffff","type":"join"}"#,
            EventKind::Join,
        );
    }

    /// Decodes `json` as a `T`, checks it is `expected`, and that the value
    /// encodes back to `json`, byte for byte.
    fn check_wire<T>(json: &str, expected: T)
    where
        T: for<'de> Deserialize<'de> + Serialize + PartialEq + std::fmt::Debug,
    {
        let decoded: T = from_json(json.as_bytes()).unwrap();
        assert_eq!(decoded, expected);
        assert_eq!(String::from_utf8(to_json(&decoded)).unwrap(), json);
    }

    #[test]
    fn known_values_keep_their_wire_form() {
        let event = |kind| Event {
            seq: 1,
            ts: 2,
            from: "a".into(),
            color: "ffffff".into(),
            kind,
        };
        let head = r#"{"seq":1,"ts":2,"from":"a","color":"ffffff","type":"#;
        let message = EventKind::Message {
            text: "hi".into(),
            id: "x".into(),
        };
        let me = EventKind::Me {
            text: "waves".into(),
            id: "y".into(),
        };
        let leave = |reason| EventKind::Leave { reason };
        for (tail, kind) in [
            (r#""message","text":"hi","id":"x"}"#, message),
            (r#""me","text":"waves","id":"y"}"#, me),
            (r#""join"}"#, EventKind::Join),
            (r#""leave","reason":"exit"}"#, leave(LeaveReason::Exit)),
            (r#""leave","reason":"quit"}"#, leave(LeaveReason::Quit)),
            (
                r#""leave","reason":"timeout"}"#,
                leave(LeaveReason::Timeout),
            ),
            (r#""nick","to":"b"}"#, EventKind::Nick { to: "b".into() }),
            (r#""color"}"#, EventKind::Color),
        ] {
            check_wire(&format!("{head}{tail}"), event(kind));
        }
        for (json, reset) in [
            (r#""start""#, Reset::Start),
            (r#""switch""#, Reset::Switch),
            (r#""gap""#, Reset::Gap),
            (r#""epoch""#, Reset::Epoch),
        ] {
            check_wire(json, reset);
            assert_eq!(format!("\"{}\"", reset.as_str()), json);
        }
        let reply = |reply| SendAnswer {
            ok: true,
            seq: None,
            duplicate: false,
            reply: Some(reply),
        };
        for (json, expected) in [
            (
                r#"{"ok":true,"reply":{"type":"joined","channel":"games"}}"#,
                Reply::Joined {
                    channel: "games".into(),
                },
            ),
            (
                r#"{"ok":true,"reply":{"type":"list","channels":[{"name":"lobby","members":3}]}}"#,
                Reply::List {
                    channels: vec![ChannelInfo {
                        name: "lobby".into(),
                        members: 3,
                    }],
                },
            ),
            (
                r#"{"ok":true,"reply":{"type":"who","channel":"lobby","members":[{"name":"a","color":"ffffff"}]}}"#,
                Reply::Who {
                    channel: "lobby".into(),
                    members: vec![Member {
                        name: "a".into(),
                        color: "ffffff".into(),
                    }],
                },
            ),
            (
                r#"{"ok":true,"reply":{"type":"nick","name":"b"}}"#,
                Reply::Nick { name: "b".into() },
            ),
            (
                r#"{"ok":true,"reply":{"type":"color","color":"66ccff"}}"#,
                Reply::Color {
                    color: "66ccff".into(),
                },
            ),
            (
                r#"{"ok":true,"reply":{"type":"help","commands":[{"usage":"/who","about":"who is here"}]}}"#,
                Reply::Help {
                    commands: vec![CommandHelp {
                        usage: "/who".into(),
                        about: "who is here".into(),
                    }],
                },
            ),
        ] {
            check_wire(json, reply(expected));
        }
        check_wire(
            r#"{"op":"who","token":"t"}"#,
            BroadcastRequest::Who { token: "t".into() },
        );
        check_wire(
            r#"{"channel":"lobby","members":[{"name":"a","color":"ffffff"}]}"#,
            WhoAnswer {
                channel: "lobby".into(),
                members: vec![Member {
                    name: "a".into(),
                    color: "ffffff".into(),
                }],
            },
        );
    }

    /// Checks that `json` decodes as `expected`; notes in `wrong` when not.
    fn check_decodes<T>(json: &str, expected: T, wrong: &mut Vec<String>)
    where
        T: for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        match from_json::<T>(json.as_bytes()) {
            Ok(decoded) if decoded == expected => {}
            other => wrong.push(format!("{json} decoded as {other:?}")),
        }
    }

    /// What a newer server may send: an event type, a leave reason, a reset
    /// value and a reply type this build does not know.
    #[test]
    fn values_of_a_newer_server_decode_as_unknown() {
        let mut wrong = Vec::new();
        let event = |seq, kind| Event {
            seq,
            ts: 2,
            from: "ada".into(),
            color: "ff8800".into(),
            kind,
        };
        let head = r#"{"seq":4,"ts":2,"from":"ada","color":"ff8800","type":"#;
        for (tail, kind) in [
            (r#""reaction","on":3,"emoji":"+1"}"#, EventKind::Unknown),
            (r#""topic"}"#, EventKind::Unknown),
            (r#""message_deleted","id":{"of":"m3"}}"#, EventKind::Unknown),
            (
                r#""leave","reason":"kicked","by":"bob"}"#,
                EventKind::Leave {
                    reason: LeaveReason::Unknown,
                },
            ),
        ] {
            check_decodes(&format!("{head}{tail}"), event(4, kind), &mut wrong);
        }
        check_decodes(r#""purge""#, Reset::Unknown, &mut wrong);
        check_decodes(
            r#"{"ok":true,"seq":7,"reply":{"type":"poll","question":"tea?"}}"#,
            SendAnswer {
                ok: true,
                seq: Some(7),
                duplicate: false,
                reply: Some(Reply::Unknown),
            },
            &mut wrong,
        );
        // An event of an unknown type between known ones, in a whole answer.
        let message = |seq: u64| EventKind::Message {
            text: format!("m{seq}"),
            id: format!("i{seq}"),
        };
        check_decodes(
            r#"{"channel":"lobby","cursor":"e1:5","events":[
                {"seq":3,"ts":2,"from":"ada","color":"ff8800","type":"message","text":"m3","id":"i3"},
                {"seq":4,"ts":2,"from":"ada","color":"ff8800","type":"reaction","on":3},
                {"seq":5,"ts":2,"from":"ada","color":"ff8800","type":"message","text":"m5","id":"i5"}]}"#,
            PollAnswer {
                channel: "lobby".into(),
                cursor: Cursor {
                    epoch: "e1".into(),
                    seq: 5,
                },
                events: vec![
                    event(3, message(3)),
                    event(4, EventKind::Unknown),
                    event(5, message(5)),
                ],
                reset: None,
                reconnect: false,
            },
            &mut wrong,
        );
        check_decodes(
            r#"{"channel":"lobby","cursor":"e1:5","events":[],"reset":"purge"}"#,
            PollAnswer {
                channel: "lobby".into(),
                cursor: Cursor {
                    epoch: "e1".into(),
                    seq: 5,
                },
                events: vec![],
                reset: Some(Reset::Unknown),
                reconnect: false,
            },
            &mut wrong,
        );
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// `Unknown` stands for a type or value only by its name: a known type
    /// with a field missing or wrong is still an error, not an unknown.
    #[test]
    fn known_types_with_bad_fields_are_still_refused() {
        for json in [
            r#"{"seq":1,"ts":2,"from":"a","color":"ffffff","type":"nick"}"#,
            r#"{"seq":1,"ts":2,"from":"a","color":"ffffff","type":"message","text":5,"id":"x"}"#,
            r#"{"seq":1,"ts":2,"from":"a","color":"ffffff","type":"leave"}"#,
            r#"{"seq":1,"ts":2,"from":"a","color":"ffffff","type":"leave","reason":7}"#,
            r#"{"seq":1,"ts":2,"from":"a","color":"ffffff"}"#,
            r#"{"ts":2,"from":"a","color":"ffffff","type":"reaction"}"#,
        ] {
            assert!(from_json::<Event>(json.as_bytes()).is_err(), "{json}");
        }
        for json in [r#"{"type":"who","channel":"lobby"}"#, r#"{"channel":"x"}"#] {
            assert!(from_json::<Reply>(json.as_bytes()).is_err(), "{json}");
        }
        assert!(from_json::<Reset>(b"3").is_err());
    }

    /// An `Unknown` keeps nothing of what it stood for and encodes as the
    /// reserved name `unknown`, which decodes as `Unknown` again.
    #[test]
    fn unknown_values_encode_as_the_reserved_name() {
        let event = Event {
            seq: 4,
            ts: 2,
            from: "ada".into(),
            color: "ff8800".into(),
            kind: EventKind::Unknown,
        };
        check_wire(
            r#"{"seq":4,"ts":2,"from":"ada","color":"ff8800","type":"unknown"}"#,
            event,
        );
        check_wire(
            r#"{"type":"leave","reason":"unknown"}"#,
            EventKind::Leave {
                reason: LeaveReason::Unknown,
            },
        );
        check_wire(r#"{"type":"unknown"}"#, Reply::Unknown);
        check_wire(r#""unknown""#, Reset::Unknown);
        assert_eq!(Reset::Unknown.as_str(), "unknown");
    }

    #[test]
    fn broadcast_requests_are_told_apart_by_op() {
        let start: BroadcastRequest = from_json(br#"{"op":"start"}"#).unwrap();
        assert_eq!(
            start,
            BroadcastRequest::Start {
                name: None,
                color: None,
                channel: None
            }
        );
        let send: BroadcastRequest =
            from_json(br#"{"op":"send","token":"t","id":"i","text":"x","v":1}"#).unwrap();
        assert!(matches!(send, BroadcastRequest::Send { .. }));
        assert!(from_json::<BroadcastRequest>(br#"{"op":"shout"}"#).is_err());
        assert!(from_json::<BroadcastRequest>(br#"{"op":"send","token":"t"}"#).is_err());
    }

    #[test]
    fn spliced_poll_answers_decode() {
        let event = Event {
            seq: 7,
            ts: 1,
            from: "a\"b".into(),
            color: "ffffff".into(),
            kind: EventKind::Message {
                text: "<b>\u{202e}".into(),
                id: "x".into(),
            },
        };
        let encoded = to_json(&event);
        let cursor = Cursor {
            epoch: "e1".into(),
            seq: 7,
        };
        for (reset, reconnect) in [(None, false), (Some(Reset::Gap), false), (None, true)] {
            let json = poll_answer_json(
                "lobby",
                &cursor,
                [&encoded[..], &encoded[..]].into_iter(),
                reset,
                reconnect,
            );
            let answer: PollAnswer = from_json(&json).unwrap();
            assert_eq!(answer.events, vec![event.clone(), event.clone()]);
            assert_eq!((answer.reset, answer.reconnect), (reset, reconnect));
            assert_eq!(answer.cursor, cursor);
        }
    }

    #[test]
    fn poll_answer_leaves_out_empty_flags() {
        let answer = PollAnswer {
            channel: "lobby".into(),
            cursor: Cursor {
                epoch: "e".into(),
                seq: 3,
            },
            events: vec![],
            reset: None,
            reconnect: false,
        };
        assert_eq!(
            String::from_utf8(to_json(&answer)).unwrap(),
            r#"{"channel":"lobby","cursor":"e:3","events":[]}"#
        );
    }
}
