//! How `talk chat` writes what happens: one line per event, reset, command
//! reply or refusal, in plain text (optionally with colored names) or JSON.
//!
//! The plain text format is stable, because scripts read it; it is
//! documented in README.md (`talk chat`, piped mode). Text from other people is
//! shown as text: control characters, which could move the cursor or change
//! colors, are replaced before anything reaches the terminal.

use talk_client::protocol::{Event, EventKind, LeaveReason, Reply, Reset};

/// Whether names are painted in their colors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Style {
    pub(crate) colors: bool,
}

impl Style {
    /// `name`, in its `rrggbb` color as ANSI truecolor when colors are on.
    fn name(self, name: &str, color: &str) -> String {
        let name = printable(name);
        match (self.colors, parse_rgb(color)) {
            (true, Some([red, green, blue])) => {
                format!("\x1b[38;2;{red};{green};{blue}m{name}\x1b[0m")
            }
            _ => name,
        }
    }
}

fn parse_rgb(color: &str) -> Option<[u8; 3]> {
    if color.len() != 6 || !color.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    let part = |at: usize| u8::from_str_radix(&color[at..at + 2], 16).ok();
    Some([part(0)?, part(2)?, part(4)?])
}

/// `text` with every control character replaced: line breaks and tabs by a
/// space (one event stays one line), anything else by U+FFFD.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|character| match character {
            '\n' | '\r' | '\t' => ' ',
            other if other.is_control() => '\u{fffd}',
            other => other,
        })
        .collect()
}

/// The line for one event of `channel`; none for an event of a type this
/// build does not know (a newer server's), as the protocol asks.
pub(crate) fn event_line(style: Style, channel: &str, event: &Event) -> Option<String> {
    let who = style.name(&event.from, &event.color);
    let channel = printable(channel);
    Some(match &event.kind {
        EventKind::Message { text, .. } => format!("{who}: {}", printable(text)),
        EventKind::Me { text, .. } => format!("* {who} {}", printable(text)),
        EventKind::Join => format!("-> {who} joined {channel}"),
        EventKind::Leave { reason } => match reason {
            LeaveReason::Exit => format!("<- {who} left {channel}"),
            LeaveReason::Quit => format!("<- {who} quit"),
            LeaveReason::Timeout => format!("<- {who} timed out"),
            LeaveReason::Unknown => format!("<- {who} left"),
        },
        EventKind::Nick { to } => {
            format!("~ {who} is now {}", style.name(to, &event.color))
        }
        EventKind::Color => format!("~ {who} changed color to {}", printable(&event.color)),
        EventKind::Unknown => return None,
    })
}

/// The line that starts a reset: what follows replaces the view.
pub(crate) fn reset_line(channel: &str, reason: Reset) -> String {
    let channel = printable(channel);
    match reason {
        Reset::Start | Reset::Switch => format!("== {channel}"),
        Reset::Gap | Reset::Epoch | Reset::Unknown => format!("== {channel} (history reloaded)"),
    }
}

/// The lines for a command's reply. `Joined` has none: the reset of the new
/// channel that follows says it. A reply this build does not know (to a
/// newer server's command) says only that the command went through.
pub(crate) fn reply_lines(style: Style, reply: &Reply) -> Vec<String> {
    match reply {
        Reply::Joined { .. } => vec![],
        Reply::List { channels } => {
            let listed: Vec<String> = channels
                .iter()
                .map(|channel| format!("{} ({})", printable(&channel.name), channel.members))
                .collect();
            if listed.is_empty() {
                vec!["-- no channels".to_owned()]
            } else {
                vec![format!("-- channels: {}", listed.join(", "))]
            }
        }
        Reply::Who { channel, members } => {
            let names: Vec<String> = members
                .iter()
                .map(|member| style.name(&member.name, &member.color))
                .collect();
            vec![format!(
                "-- in {}: {}",
                printable(channel),
                names.join(", ")
            )]
        }
        Reply::Nick { name } => vec![format!("-- you are now {}", printable(name))],
        Reply::Color { color } => vec![format!("-- your color is now {}", printable(color))],
        Reply::Help { commands } => commands
            .iter()
            .map(|command| {
                format!(
                    "-- {}: {}",
                    printable(&command.usage),
                    printable(&command.about)
                )
            })
            .collect(),
        Reply::Unknown => vec!["-- done (a reply this version of talk cannot show)".to_owned()],
    }
}

/// The line for a refused send or command.
pub(crate) fn error_line(error: &talk_client::Error) -> String {
    match error {
        talk_client::Error::Server { detail, .. } => format!("!! {}", printable(&detail.message)),
        other => format!("!! {}", printable(&other.to_string())),
    }
}

/// JSON lines, for `--json`: every line is one JSON object.
pub(crate) mod json {
    use serde_json::{json, Value};
    use talk_client::protocol::{Event, EventKind, Reply, Reset};

    /// An event: the protocol's event object with its `channel` added;
    /// none for an event of a type this build does not know.
    pub(crate) fn event(channel: &str, event: &Event) -> Option<String> {
        if event.kind == EventKind::Unknown {
            return None;
        }
        let mut value = serde_json::to_value(event).expect("events serialize");
        if let Value::Object(fields) = &mut value {
            fields.insert("channel".to_owned(), Value::from(channel));
        }
        Some(value.to_string())
    }

    /// A reset: `{"reset": "start", "channel": "lobby"}`.
    pub(crate) fn reset(channel: &str, reason: Reset) -> String {
        json!({"reset": reason.as_str(), "channel": channel}).to_string()
    }

    /// A command's reply: `{"reply": {...}}` as the protocol has it.
    pub(crate) fn reply(reply: &Reply) -> String {
        json!({ "reply": reply }).to_string()
    }

    /// A refusal: `{"error": {"code": ..., "message": ...}}`.
    pub(crate) fn error(error: &talk_client::Error) -> String {
        match error {
            talk_client::Error::Server { detail, .. } => json!({ "error": detail }).to_string(),
            other => {
                json!({"error": {"code": "no_answer", "message": other.to_string()}}).to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use talk_client::protocol::{ChannelInfo, Member};

    const PLAIN: Style = Style { colors: false };
    const COLORS: Style = Style { colors: true };

    fn event(kind: EventKind) -> Event {
        Event {
            seq: 7,
            ts: 1_700_000_000_000,
            from: "ada".into(),
            color: "ff8800".into(),
            kind,
        }
    }

    /// Checks the line shown for an event of `kind`; `""` stands for none.
    fn check(kind: EventKind, expected: &str) {
        let line = event_line(PLAIN, "lobby", &event(kind));
        assert_eq!(line.unwrap_or_default(), expected);
    }

    #[test]
    fn events_in_plain_text() {
        let message = |text: &str| EventKind::Message {
            text: text.into(),
            id: "x".into(),
        };
        check(message("hello"), "ada: hello");
        check(message("two\nlines"), "ada: two lines");
        check(message("\x1b[2Jboo"), "ada: \u{fffd}[2Jboo");
        check(message("<b>bold</b>"), "ada: <b>bold</b>");
        check(
            EventKind::Me {
                text: "waves".into(),
                id: "x".into(),
            },
            "* ada waves",
        );
        check(EventKind::Join, "-> ada joined lobby");
        let leave = |reason| EventKind::Leave { reason };
        check(leave(LeaveReason::Exit), "<- ada left lobby");
        check(leave(LeaveReason::Quit), "<- ada quit");
        check(leave(LeaveReason::Timeout), "<- ada timed out");
        check(leave(LeaveReason::Unknown), "<- ada left");
        check(EventKind::Nick { to: "bob".into() }, "~ ada is now bob");
        check(EventKind::Color, "~ ada changed color to ff8800");
        check(EventKind::Unknown, "");
    }

    #[test]
    fn names_in_truecolor_when_colors_are_on() {
        let line = event_line(COLORS, "lobby", &event(EventKind::Join)).unwrap();
        assert_eq!(line, "-> \x1b[38;2;255;136;0mada\x1b[0m joined lobby");
        let mut odd = event(EventKind::Join);
        odd.color = "not-a-color".into();
        let line = event_line(COLORS, "lobby", &odd).unwrap();
        assert_eq!(line, "-> ada joined lobby");
    }

    #[test]
    fn resets_and_replies() {
        assert_eq!(reset_line("games", Reset::Switch), "== games");
        assert_eq!(
            reset_line("games", Reset::Gap),
            "== games (history reloaded)"
        );
        assert_eq!(
            reset_line("games", Reset::Unknown),
            "== games (history reloaded)"
        );
        let check_reply = |reply: Reply, expected: &[&str]| {
            assert_eq!(reply_lines(PLAIN, &reply), expected);
        };
        check_reply(
            Reply::Joined {
                channel: "games".into(),
            },
            &[],
        );
        check_reply(
            Reply::List {
                channels: vec![
                    ChannelInfo {
                        name: "lobby".into(),
                        members: 3,
                    },
                    ChannelInfo {
                        name: "games".into(),
                        members: 1,
                    },
                ],
            },
            &["-- channels: lobby (3), games (1)"],
        );
        check_reply(
            Reply::Who {
                channel: "lobby".into(),
                members: vec![
                    Member {
                        name: "ada".into(),
                        color: "ff8800".into(),
                    },
                    Member {
                        name: "bob".into(),
                        color: "66ccff".into(),
                    },
                ],
            },
            &["-- in lobby: ada, bob"],
        );
        check_reply(Reply::Nick { name: "bo".into() }, &["-- you are now bo"]);
        check_reply(
            Reply::Color {
                color: "66ccff".into(),
            },
            &["-- your color is now 66ccff"],
        );
        check_reply(
            Reply::Unknown,
            &["-- done (a reply this version of talk cannot show)"],
        );
    }

    #[test]
    fn json_lines() {
        let line = json::event(
            "lobby",
            &event(EventKind::Message {
                text: "hi".into(),
                id: "x".into(),
            }),
        )
        .unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["channel"], "lobby");
        assert_eq!(value["type"], "message");
        assert_eq!(value["text"], "hi");
        assert_eq!(value["seq"], 7);
        assert_eq!(
            json::reset("lobby", Reset::Start),
            r#"{"channel":"lobby","reset":"start"}"#
        );
        assert_eq!(
            json::reply(&Reply::Nick { name: "bo".into() }),
            r#"{"reply":{"name":"bo","type":"nick"}}"#
        );
    }

    /// What a newer server sends that this build does not know shows as
    /// `unknown` where it is part of something shown, and not at all when
    /// it is a whole event.
    #[test]
    fn json_lines_of_values_this_build_does_not_know() {
        assert_eq!(json::event("lobby", &event(EventKind::Unknown)), None);
        let leave = EventKind::Leave {
            reason: LeaveReason::Unknown,
        };
        let line = json::event("lobby", &event(leave)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (&value["type"], &value["reason"]),
            (&"leave".into(), &"unknown".into())
        );
        assert_eq!(
            json::reset("lobby", Reset::Unknown),
            r#"{"channel":"lobby","reset":"unknown"}"#
        );
        assert_eq!(
            json::reply(&Reply::Unknown),
            r#"{"reply":{"type":"unknown"}}"#
        );
    }
}
