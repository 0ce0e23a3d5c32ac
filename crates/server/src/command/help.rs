//! `/help`: every command with a line about it.

use talk_protocol::{CommandHelp, Reply, SendAnswer};

use super::replied;

/// The commands, for the error that answers an unknown one.
pub(super) const COMMAND_NAMES: &str = "/join, /exit, /list, /who, /nick, /color, /me and /help";

const COMMANDS: &[(&str, &str)] = &[
    (
        "/join <channel>",
        "go to a channel, creating it if it is new",
    ),
    ("/exit", "go back to the lobby"),
    ("/list", "list the channels with people in them"),
    ("/who", "list the people in this channel"),
    ("/nick <name>", "change your name"),
    (
        "/color <rrggbb>",
        "change the color of your name, e.g. /color 66ccff",
    ),
    ("/me <action>", "say what you do, e.g. /me waves"),
    ("/help", "show this list"),
];

pub(super) fn run() -> SendAnswer {
    let commands = COMMANDS
        .iter()
        .map(|(usage, about)| CommandHelp {
            usage: (*usage).to_owned(),
            about: (*about).to_owned(),
        })
        .collect();
    replied(Reply::Help { commands })
}
