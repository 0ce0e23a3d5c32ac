//! `talk chat` with stdin that is not a terminal: send each line of stdin,
//! print each event as one line, leave at the end of stdin.
//!
//! The output is made predictable for scripts: the channel's history comes
//! before anything is sent, and after each message the next line waits until
//! the message has come back in the stream (at most `ECHO_WAIT`), so a
//! command's reply never overtakes the message sent before it, and the
//! event a command posted (when its answer says where) comes before its
//! reply.

use std::io::BufRead;
use std::time::Duration;

use talk_client::protocol::Reply;
use talk_client::Client;
use tokio::sync::{mpsc, watch};

use crate::view::{self, Progress, View};
use crate::Error;

/// How long to wait for the first poll answer (the history) before sending.
const HISTORY_WAIT: Duration = Duration::from_secs(10);

/// How long to wait for a sent message to come back before going on.
const ECHO_WAIT: Duration = Duration::from_secs(10);

/// Runs the piped chat on a started session.
pub(crate) async fn run(client: Client, view: View) -> Result<(), Error> {
    let identity = client.identity();
    view.info(&format!(
        ".. you are {} in {}",
        identity.name, identity.channel
    ));
    let (progress_sender, progress) = watch::channel(Progress::default());
    let mut poller = tokio::spawn(view::show_updates(
        client.clone(),
        view.clone(),
        progress_sender,
    ));
    let result = tokio::select! {
        result = send_stdin(&client, &view, progress) => result,
        joined = &mut poller => match joined {
            Ok(result) => result,
            Err(panicked) => std::panic::resume_unwind(panicked.into_panic()),
        },
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    if let Err(error) = client.leave().await {
        view.info(&format!(".. could not leave cleanly: {error}"));
    }
    if !poller.is_finished() {
        // `leave` ends `next_update` at once; this only waits for the
        // poller to print what it had.
        let _ = tokio::time::timeout(Duration::from_secs(2), poller).await;
    }
    match result {
        // The reader of our stdout went away (`talk chat ... | head`): that
        // is how pipelines end, not a failure.
        Err(Error::Io(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Sends every line of stdin, in order, until it ends.
async fn send_stdin(
    client: &Client,
    view: &View,
    mut progress: watch::Receiver<Progress>,
) -> Result<(), Error> {
    wait_until(&mut progress, |progress| progress.resets > 0, HISTORY_WAIT).await;
    let mut lines = read_stdin_lines();
    while let Some(line) = lines.recv().await {
        let text = line?;
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match client.send(text).await {
            Ok(answer) => {
                // The event a send posted is shown before its reply, so the
                // reply of `/nick` (say) comes after the `nick` event.
                if let Some(Reply::Joined { channel }) = &answer.reply {
                    let joined = |progress: &Progress| progress.channel == *channel;
                    wait_until(&mut progress, joined, ECHO_WAIT).await;
                } else if let Some(seq) = answer.seq {
                    let channel = client.identity().channel;
                    let echoed =
                        |progress: &Progress| progress.channel == channel && progress.seq >= seq;
                    wait_until(&mut progress, echoed, ECHO_WAIT).await;
                }
                view.answer(&answer)?;
            }
            Err(error) => view.refusal(&error)?,
        }
    }
    Ok(())
}

/// Waits until `condition` holds for the shown progress, at most `limit`.
async fn wait_until(
    progress: &mut watch::Receiver<Progress>,
    condition: impl FnMut(&Progress) -> bool,
    limit: Duration,
) {
    // An error means the poller stopped; its own result tells why.
    let _ = tokio::time::timeout(limit, progress.wait_for(condition)).await;
}

/// The lines of stdin, read on a thread of their own: a blocking read
/// cannot be cancelled, and on a runtime thread it would hold up the exit
/// after Ctrl-C until the next line came. Bytes that are not UTF-8 are
/// replaced, so one bad line does not end the chat.
fn read_stdin_lines() -> mpsc::Receiver<std::io::Result<String>> {
    let (sender, receiver) = mpsc::channel(64);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            let line = match stdin.read_until(b'\n', &mut buffer) {
                Ok(0) => break,
                Ok(_) => Ok(String::from_utf8_lossy(&buffer).into_owned()),
                Err(error) => Err(error),
            };
            let failed = line.is_err();
            if sender.blocking_send(line).is_err() || failed {
                break;
            }
        }
    });
    receiver
}
