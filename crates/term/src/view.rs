//! What `talk chat` shows, and where: the poll loop that turns the client's
//! updates into lines, and the two places lines go (stdout and stderr when
//! piped, above the line being typed when interactive).

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use talk_client::protocol::SendAnswer;
use talk_client::{Client, LostReason, Update};
use tokio::sync::watch;

use crate::format::{self, Style};

/// Something that prints a line above the line being typed (rustyline's
/// external printer), shared between tasks.
pub(crate) type SharedPrinter = Arc<Mutex<dyn FnMut(String) + Send>>;

/// Where lines go.
#[derive(Clone)]
pub(crate) enum Screen {
    /// Events, replies and refusals on stdout; news about the connection on
    /// stderr.
    Plain,
    /// Everything above the line being typed.
    Editor(SharedPrinter),
}

/// How far the shown stream has come, for a sender that waits for its own
/// message to come back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// How many resets were shown; 0 before the first poll answer.
    pub(crate) resets: u64,
    /// The channel shown.
    pub(crate) channel: String,
    /// The last seq shown in that channel.
    pub(crate) seq: u64,
}

/// Formats and prints.
#[derive(Clone)]
pub(crate) struct View {
    pub(crate) style: Style,
    pub(crate) json: bool,
    pub(crate) screen: Screen,
}

impl View {
    /// Prints a line of the conversation. Fails when stdout is gone (the
    /// reader of a pipe quit), which ends the chat.
    pub(crate) fn out(&self, line: &str) -> std::io::Result<()> {
        match &self.screen {
            Screen::Plain => {
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "{line}")?;
                stdout.flush()
            }
            Screen::Editor(printer) => {
                (printer.lock().unwrap_or_else(PoisonError::into_inner))(format!("{line}\n"));
                Ok(())
            }
        }
    }

    /// Prints news about the session or the connection: not part of the
    /// conversation, so not on stdout when piped.
    pub(crate) fn info(&self, line: &str) {
        match &self.screen {
            Screen::Plain => eprintln!("{line}"),
            Screen::Editor(_) => {
                let _ = self.out(line);
            }
        }
    }

    /// Shows one update from the client.
    pub(crate) fn update(&self, update: &Update) -> std::io::Result<()> {
        match update {
            Update::Reset {
                channel,
                reason,
                events,
            } => {
                if self.json {
                    self.out(&format::json::reset(channel, *reason))?;
                } else {
                    self.out(&format::reset_line(channel, *reason))?;
                }
                for event in events {
                    self.event(channel, event)?;
                }
            }
            Update::Event { channel, event } => self.event(channel, event)?,
            Update::SessionRestarted { identity, notice } => {
                let mut line = format!(
                    ".. the server had forgotten the session; you are {} again",
                    identity.name
                );
                if let Some(notice) = notice {
                    line.push_str(&format!(" ({})", format::printable(notice)));
                }
                self.info(&line);
            }
            Update::ConnectionLost {
                reason, retry_in, ..
            } => {
                let why = match reason {
                    LostReason::ServerGoingAway => "the server is restarting".to_owned(),
                    LostReason::Failed(error) => error.to_string(),
                };
                self.info(&format!(
                    ".. connection lost ({}); trying again in {:.1} s",
                    format::printable(&why),
                    retry_in.as_secs_f64()
                ));
            }
            Update::ConnectionRestored => self.info(".. connected again"),
        }
        Ok(())
    }

    fn event(&self, channel: &str, event: &talk_client::protocol::Event) -> std::io::Result<()> {
        let line = if self.json {
            format::json::event(channel, event)
        } else {
            format::event_line(self.style, channel, event)
        };
        match line {
            Some(line) => self.out(&line),
            None => Ok(()),
        }
    }

    /// Shows the answer to a send: a command's reply, if any.
    pub(crate) fn answer(&self, answer: &SendAnswer) -> std::io::Result<()> {
        let Some(reply) = &answer.reply else {
            return Ok(());
        };
        if matches!(reply, talk_client::protocol::Reply::Joined { .. }) {
            // The reset of the new channel shows the move.
            return Ok(());
        }
        if self.json {
            self.out(&format::json::reply(reply))
        } else {
            for line in format::reply_lines(self.style, reply) {
                self.out(&line)?;
            }
            Ok(())
        }
    }

    /// Shows why a send was refused.
    pub(crate) fn refusal(&self, error: &talk_client::Error) -> std::io::Result<()> {
        if self.json {
            self.out(&format::json::error(error))
        } else {
            self.out(&format::error_line(error))
        }
    }
}

/// Shows every update until the session ends, keeping `progress` current.
/// Ends with an error when the server refuses to poll for good or stdout is
/// gone.
pub(crate) async fn show_updates(
    client: Client,
    view: View,
    progress: watch::Sender<Progress>,
) -> Result<(), crate::Error> {
    while let Some(update) = client.next_update().await? {
        view.update(&update)?;
        match &update {
            Update::Reset {
                channel, events, ..
            } => progress.send_modify(|progress| {
                progress.resets += 1;
                progress.channel.clone_from(channel);
                progress.seq = events.last().map_or(0, |event| event.seq);
            }),
            Update::Event { channel, event } => progress.send_modify(|progress| {
                progress.channel.clone_from(channel);
                progress.seq = event.seq;
            }),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use talk_client::protocol::{Event, EventKind, Reset};

    use super::*;

    /// A view that collects the lines it prints.
    fn collecting_view() -> (View, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let printed = Arc::clone(&lines);
        let printer: SharedPrinter = Arc::new(Mutex::new(move |text: String| {
            printed.lock().unwrap().push(text.trim_end().to_owned());
        }));
        let view = View {
            style: Style { colors: false },
            json: false,
            screen: Screen::Editor(printer),
        };
        (view, lines)
    }

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            seq,
            ts: 0,
            from: "ada".into(),
            color: "ff8800".into(),
            kind,
        }
    }

    /// Events of a type this build does not know show nothing, in a reset's
    /// history as on their own, and the events around them show as usual.
    #[test]
    fn events_of_unknown_types_show_nothing() {
        let (view, lines) = collecting_view();
        let message = |text: &str| EventKind::Message {
            text: text.into(),
            id: "x".into(),
        };
        let updates = [
            Update::Reset {
                channel: "lobby".into(),
                reason: Reset::Unknown,
                events: vec![
                    event(1, EventKind::Join),
                    event(2, EventKind::Unknown),
                    event(3, message("before")),
                ],
            },
            Update::Event {
                channel: "lobby".into(),
                event: event(4, EventKind::Unknown),
            },
            Update::Event {
                channel: "lobby".into(),
                event: event(5, message("after")),
            },
        ];
        for update in &updates {
            view.update(update).unwrap();
        }
        assert_eq!(
            *lines.lock().unwrap(),
            [
                "== lobby (history reloaded)",
                "-> ada joined lobby",
                "ada: before",
                "ada: after"
            ]
        );
    }
}
