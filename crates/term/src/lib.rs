//! `talk chat`: a terminal client for talk servers, built on `talk-client`.
//!
//! With a terminal on stdin it is an interactive chat: a line editor
//! (rustyline) at the bottom, incoming lines printed above it without
//! garbling what is being typed, names in their colors. Without one it is a
//! filter for scripts and bots: each line of stdin is sent, each event is
//! printed as one line of stdout (plain text, or JSON with `--json`).
//! Commands are texts starting with `/`, as in the browser.

mod format;
mod interactive;
mod piped;
mod view;

use std::io::IsTerminal;

use talk_client::{Client, ClientConfig};

use crate::format::Style;
use crate::view::{Screen, View};

/// How `talk chat` writes events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// One line of plain text per event.
    #[default]
    Text,
    /// One JSON object per line (only when stdin is not a terminal; an
    /// interactive chat is for people).
    Json,
}

/// Whether names are painted in their colors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorChoice {
    /// When stdout is a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Everything `talk chat` needs.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// The server, e.g. `http://localhost:8000`.
    pub url: String,
    /// The name to ask for; the server picks one when absent or taken.
    pub name: Option<String>,
    /// The color to ask for, `rrggbb`.
    pub color: Option<String>,
    /// The channel to start in.
    pub channel: Option<String>,
    /// How events are written.
    pub output: OutputFormat,
    /// Whether names are colored.
    pub colors: ColorChoice,
}

/// Why `talk chat` stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No session could be started.
    #[error("could not start a session at {url}: {source}")]
    Connect {
        /// The server's address.
        url: String,
        /// What went wrong.
        source: talk_client::Error,
    },
    /// The server refused to go on with the session.
    #[error("the server refused the session: {0}")]
    Client(#[from] talk_client::Error),
    /// The terminal could not be used.
    #[error("the terminal failed: {0}")]
    Terminal(#[from] rustyline::error::ReadlineError),
    /// Reading stdin or writing stdout failed.
    #[error("stdin or stdout failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the chat until the person leaves (Ctrl-C, Ctrl-D) or stdin ends;
/// either way the session leaves its channel.
pub async fn run(config: ChatConfig) -> Result<(), Error> {
    let interactive = std::io::stdin().is_terminal();
    let colors = match config.colors {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stdout().is_terminal() && !no_color_is_set(),
    };
    let mut client_config = ClientConfig::new(config.url.clone());
    client_config.name = config.name.clone();
    client_config.color = config.color.clone();
    client_config.channel = config.channel.clone();
    let client = Client::connect(client_config)
        .await
        .map_err(|source| Error::Connect {
            url: config.url.clone(),
            source,
        })?;
    let style = Style { colors };
    if interactive {
        interactive::run(client, style).await
    } else {
        let view = View {
            style,
            json: config.output == OutputFormat::Json,
            screen: Screen::Plain,
        };
        piped::run(client, view).await
    }
}

/// `NO_COLOR` (no-color.org): set and not empty turns colors off.
fn no_color_is_set() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty())
}
