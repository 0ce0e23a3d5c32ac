//! `talk client-files DIR`: writes the browser client (talk.html, talk.js,
//! talk.css and its icon) into a folder, for operators whose own web server
//! or proxy serves the files and forwards only `/poll` and `/broadcast`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Write the browser client's files into a folder.
#[derive(Debug, Args)]
pub(crate) struct ClientFilesArgs {
    /// The folder to write into (created if missing; files of the same name
    /// are replaced). Serve it at the same address as `/poll` and
    /// `/broadcast`, or set `data-server` on the script tag.
    dir: PathBuf,
}

/// Writes the files and lists them, with a reminder of what to proxy.
pub(crate) fn run(args: ClientFilesArgs) -> anyhow::Result<()> {
    let written = talk_server::widget::write_client_files(&args.dir)
        .with_context(|| format!("cannot write the client files into {}", args.dir.display()))?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    println!(
        "serve {} as static files and proxy /poll and /broadcast to `talk serve`",
        args.dir.display()
    );
    Ok(())
}
