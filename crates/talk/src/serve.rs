//! `talk serve`: the flags of the server, with their `TALK_*` environment
//! twins, turned into a `talk_server::Config`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, ValueEnum};
use talk_server::{Config, Rate};
use tracing_subscriber::EnvFilter;

/// Run the chat server.
#[derive(Debug, Args)]
// The fields' doc comments are `talk serve --help`, where a plain URL
// reads best.
#[allow(rustdoc::bare_urls)]
pub(crate) struct ServeArgs {
    /// The address to listen on; port 0 picks a free port.
    #[arg(long, env = "TALK_LISTEN", default_value = "0.0.0.0:8000")]
    listen: SocketAddr,

    /// An address for operators, e.g. 127.0.0.1:9100, that serves /metrics
    /// and /healthz only; with it, /metrics is no longer served on --listen.
    /// Keep it where only your monitoring can reach it.
    #[arg(long, env = "TALK_INTERNAL_LISTEN")]
    internal_listen: Option<SocketAddr>,

    /// The folder of the history store (created if missing, readable by its
    /// owner only).
    #[arg(long, env = "TALK_DATA", default_value = "talk-data")]
    data: PathBuf,

    /// How long a poll is held when nothing happens, in seconds. Keep it
    /// below your proxies' timeouts (nginx 60 s, Heroku 30 s).
    #[arg(long, env = "TALK_POLL_TIMEOUT", default_value_t = 25.0)]
    poll_timeout: f64,

    /// How long a session lives without a poll before it leaves, in seconds.
    #[arg(long, env = "TALK_SESSION_GRACE", default_value_t = 40.0)]
    session_grace: f64,

    /// How long a client may take to send a whole request, head and body,
    /// from its first byte, in seconds; a slower one is cut off. Also how
    /// long an idle connection stays open.
    #[arg(long, env = "TALK_REQUEST_TIMEOUT", default_value_t = 10.0)]
    request_timeout: f64,

    /// How many events per channel are kept for clients to catch up.
    #[arg(long, env = "TALK_HISTORY_WINDOW", default_value_t = 1000)]
    history_window: usize,

    /// How many events a client gets when it joins a channel.
    #[arg(long, env = "TALK_HISTORY_ON_JOIN", default_value_t = 50)]
    history_on_join: usize,

    /// The longest message, in characters.
    #[arg(long, env = "TALK_MAX_MESSAGE", default_value_t = 1000)]
    max_message: usize,

    /// Sends per second allowed per session (0: no limit).
    #[arg(long, env = "TALK_SEND_RATE", default_value_t = 5)]
    send_rate: u32,

    /// Sends allowed at once per session.
    #[arg(long, env = "TALK_SEND_BURST", default_value_t = 10)]
    send_burst: u32,

    /// New sessions per minute allowed per client address, also the burst (0: no limit).
    #[arg(long, env = "TALK_SESSION_RATE", default_value_t = 30)]
    session_rate: u32,

    /// Channels with more members than this do not announce joins and leaves.
    #[arg(long, env = "TALK_PRESENCE_LIMIT", default_value_t = 200)]
    presence_limit: usize,

    /// New channels (ones with no history) a session may create per minute,
    /// also the burst (0: no limit).
    #[arg(long, env = "TALK_CHANNEL_RATE", default_value_t = 10)]
    channel_rate: u32,

    /// New channels the sessions of one client address (an IPv6 client's
    /// /64) may create per minute, also the burst (0: no limit).
    #[arg(long, env = "TALK_CHANNEL_ADDRESS_RATE", default_value_t = 30)]
    channel_address_rate: u32,

    /// The most channels kept in memory; beyond it a new channel is refused
    /// unless an unused one can leave memory.
    #[arg(long, env = "TALK_MAX_CHANNELS", default_value_t = 10_000)]
    max_channels: usize,

    /// How long a channel nobody is in stays in memory, in seconds; its
    /// history stays on disk and is loaded again when someone joins.
    #[arg(long, env = "TALK_CHANNEL_IDLE", default_value_t = 600.0)]
    channel_idle: f64,

    /// An origin allowed to use the chat, e.g. https://example.com; repeat
    /// the flag (or separate with commas) for several. Default: any origin.
    #[arg(long, env = "TALK_ALLOW_ORIGIN", value_delimiter = ',')]
    allow_origin: Vec<String>,

    /// A header in which a trusted proxy puts the client's address, e.g.
    /// x-forwarded-for (the last address in it is used). Set it only behind
    /// such a proxy: clients can send the header themselves.
    #[arg(long, env = "TALK_CLIENT_IP_HEADER")]
    client_ip_header: Option<String>,

    /// Threads that serve connections (0: one per core this process may
    /// run on). With one, the server runs on a single-threaded scheduler,
    /// which answers a broadcast's polls strictly in the order they woke.
    #[arg(long, env = "TALK_THREADS", default_value_t = 0)]
    threads: usize,

    /// The log format.
    #[arg(long, env = "TALK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Lines for people.
    Human,
    /// One JSON object a line, for log collectors.
    Json,
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let seconds = |value: f64, flag: &str| {
            Duration::try_from_secs_f64(value)
                .with_context(|| format!("{flag} takes a number of seconds, not {value}"))
        };
        let send_rate = (self.send_rate > 0).then_some(Rate {
            per_period: self.send_rate,
            period: Duration::from_secs(1),
            burst: self.send_burst.max(1),
        });
        let per_minute = |rate: u32| {
            (rate > 0).then_some(Rate {
                per_period: rate,
                period: Duration::from_secs(60),
                burst: rate,
            })
        };
        let config = Config {
            data_dir: self.data.clone(),
            poll_timeout: seconds(self.poll_timeout, "--poll-timeout")?,
            session_grace: seconds(self.session_grace, "--session-grace")?,
            request_timeout: seconds(self.request_timeout, "--request-timeout")?,
            history_window: self.history_window,
            history_on_join: self.history_on_join,
            max_message_chars: self.max_message,
            send_rate,
            session_start_rate: per_minute(self.session_rate),
            channel_create_rate: per_minute(self.channel_rate),
            channel_create_rate_per_address: per_minute(self.channel_address_rate),
            max_channels: self.max_channels,
            channel_idle: seconds(self.channel_idle, "--channel-idle")?,
            presence_limit: self.presence_limit,
            allow_origins: self.allow_origin.clone(),
            client_ip_header: self.client_ip_header.clone(),
            ..Config::default()
        };
        config.validate()?;
        Ok(config)
    }
}

/// Logs go to stderr, colored only on a terminal, so that stdout carries
/// just the line that says where the server listens.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let config = args.config()?;
    match talk_server::raise_open_files_limit() {
        Ok(limit) => tracing::info!(
            open_files = limit,
            "open-files limit raised: about {limit} connections"
        ),
        Err(error) => tracing::warn!(%error, "could not raise the open-files limit"),
    }
    let runtime = build_runtime(args.threads).context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener
            .local_addr()
            .context("reading the listening address")?;
        let page_host = if address.ip().is_unspecified() {
            format!("localhost:{}", address.port())
        } else {
            address.to_string()
        };
        let internal = match args.internal_listen {
            Some(internal) => Some(
                tokio::net::TcpListener::bind(internal)
                    .await
                    .with_context(|| format!("cannot listen on {internal}"))?,
            ),
            None => None,
        };
        let metrics_at = match &internal {
            Some(internal) => {
                let internal = internal
                    .local_addr()
                    .context("reading the internal listening address")?;
                format!(" - metrics at http://{internal}/metrics")
            }
            None => String::new(),
        };
        let server = talk_server::Server::open(config)
            .await
            .context("the server cannot start")?;
        // Tools and tests read this line to find the ports, and take it to
        // mean that the server serves: it is printed only once it can.
        println!(
            "talk listening on http://{address} - chat at http://{page_host}/talk.html{metrics_at}"
        );
        let listeners = talk_server::Listeners {
            public: listener,
            internal,
        };
        server.serve(listeners, shutdown_signal()).await;
        Ok(())
    })
}

/// The scheduler of the server: single-threaded when it is to use one
/// thread (as when pinned to one core), else a pool of `threads`.
fn build_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |cores| cores.get()),
        threads => threads,
    };
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

// Lets `talk` with no subcommand run the server with its defaults (and env vars).
impl ServeArgs {
    pub(crate) fn parse_from<I: IntoIterator<Item = &'static str>>(args: I) -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Only::parse_from(args).serve
    }
}
