//! `talk chat`: the flags of the terminal client, with their `TALK_*`
//! environment twins, turned into a `talk_term::ChatConfig`.

use anyhow::Context;
use clap::Args;
use talk_term::{ChatConfig, ColorChoice, OutputFormat};

/// Chat in the terminal. With stdin not a terminal, sends each line of
/// stdin and prints each event as one line (for scripts and bots).
#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    /// The server, e.g. http://localhost:8000.
    #[arg(env = "TALK_URL", default_value = "http://localhost:8000")]
    url: String,

    /// The name to chat under; the server picks a guest name when it is
    /// missing or taken.
    #[arg(long, env = "TALK_NAME")]
    name: Option<String>,

    /// The color of your name, rrggbb (light enough to read on black).
    #[arg(long, env = "TALK_COLOR")]
    color: Option<String>,

    /// The channel to start in (default: lobby).
    #[arg(long, env = "TALK_CHANNEL")]
    channel: Option<String>,

    /// When stdin is not a terminal: print each event, reset, reply and
    /// error as one JSON object a line.
    #[arg(long)]
    json: bool,

    /// When to paint names in their colors: auto (when stdout is a terminal
    /// and NO_COLOR is not set), always or never.
    #[arg(long, env = "TALK_COLORS", value_enum, default_value_t = Colors::Auto)]
    colors: Colors,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Colors {
    Auto,
    Always,
    Never,
}

impl ChatArgs {
    fn config(self) -> ChatConfig {
        ChatConfig {
            url: self.url,
            name: self.name,
            color: self.color,
            channel: self.channel,
            output: if self.json {
                OutputFormat::Json
            } else {
                OutputFormat::Text
            },
            colors: match self.colors {
                Colors::Auto => ColorChoice::Auto,
                Colors::Always => ColorChoice::Always,
                Colors::Never => ColorChoice::Never,
            },
        }
    }
}

pub(crate) fn run(args: ChatArgs) -> anyhow::Result<()> {
    // Logs would garble the chat, so there are none unless asked for with
    // RUST_LOG; they go to stderr.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(talk_term::run(args.config()));
    // The stdin reader may be blocked in a read that cannot be cancelled;
    // do not wait for it.
    runtime.shutdown_background();
    result.context("talk chat")
}
