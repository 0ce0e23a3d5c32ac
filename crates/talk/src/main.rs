//! `talk`: the chat server, and the tools around it, in one binary.
//!
//! This file only parses the command line, sets up logging and hands each
//! subcommand to its module; the work is done in the library crates.

mod bench;
mod chat;
mod client_files;
mod serve;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: a poll answer allocates and
/// frees many small buffers, and glibc's malloc took a fifth of the
/// server's time in a fan-out profile (see bench/HISTORY.md). Built without
/// transparent huge pages, which cost 9 KiB of RSS per held poll.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Real-time chat over HTTP long-polling.
#[derive(Debug, Parser)]
#[command(name = "talk", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the chat server (what `talk` with no subcommand does).
    Serve(serve::ServeArgs),
    /// Drive a running server with load and measure it.
    Bench(bench::BenchArgs),
    /// Chat in the terminal, or from a script through stdin and stdout.
    Chat(chat::ChatArgs),
    /// Write the browser client (talk.html, talk.js, talk.css) into a folder.
    ClientFiles(client_files::ClientFilesArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::Chat(args)) => chat::run(args),
        Some(Command::ClientFiles(args)) => client_files::run(args),
        None => serve::run(serve::ServeArgs::parse_from(["talk"])),
    }
}
