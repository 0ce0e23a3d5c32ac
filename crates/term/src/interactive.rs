//! `talk chat` on a terminal: a line editor at the bottom, the conversation
//! printed above it.
//!
//! rustyline owns the terminal on a thread of its own (its `readline`
//! blocks). Incoming lines go through its external printer, which clears the
//! line being typed, prints, and draws the prompt and the half-typed line
//! again, so nothing gets garbled. Ctrl-C and Ctrl-D end `readline` with
//! `Interrupted` and `Eof`; both leave the session and quit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};
use talk_client::Client;
use tokio::sync::{mpsc, watch};

use crate::format::Style;
use crate::view::{self, Progress, Screen, View};
use crate::Error;

/// What the editor thread hands the chat.
enum Input {
    /// A line typed and entered; for a command, `done` is told when it has
    /// been carried out.
    Line {
        text: String,
        done: Option<std::sync::mpsc::SyncSender<()>>,
    },
    /// Ctrl-C or Ctrl-D.
    Quit,
    /// The terminal failed.
    Failed(ReadlineError),
}

/// Runs the interactive chat on a started session.
pub(crate) async fn run(client: Client, style: Style) -> Result<(), Error> {
    let mut editor = DefaultEditor::new()?;
    let screen = match editor.create_external_printer() {
        Ok(mut printer) => Screen::Editor(Arc::new(Mutex::new(move |text: String| {
            // A lost line of output is better than a crashed chat.
            let _ = printer.print(text);
        }))),
        // stdout is not a terminal (`talk chat URL > log`): print plainly.
        Err(_) => Screen::Plain,
    };
    let view = View {
        style,
        json: false,
        screen,
    };
    let identity = client.identity();
    view.info(&format!(
        ".. you are {} in {}; /help lists the commands, Ctrl-D leaves",
        identity.name, identity.channel
    ));
    // Nothing here waits on the progress; the prompt asks the client.
    let (progress_sender, _) = watch::channel(Progress::default());
    let mut poller = tokio::spawn(view::show_updates(
        client.clone(),
        view.clone(),
        progress_sender,
    ));
    let (input_sender, mut inputs) = mpsc::channel(16);
    let quit = Arc::new(AtomicBool::new(false));
    let editor_quit = Arc::clone(&quit);
    let editor_client = client.clone();
    std::thread::spawn(move || edit_lines(editor, &editor_client, input_sender, &editor_quit));

    let mut poller_running = true;
    let result = loop {
        tokio::select! {
            input = inputs.recv() => match input {
                Some(Input::Line { text, done }) => {
                    let text = text.trim();
                    if !text.is_empty() {
                        match client.send(text).await {
                            Ok(answer) => view.answer(&answer)?,
                            Err(error) => view.refusal(&error)?,
                        }
                    }
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                }
                Some(Input::Quit) | None => break Ok(()),
                Some(Input::Failed(error)) => break Err(Error::Terminal(error)),
            },
            joined = &mut poller, if poller_running => {
                poller_running = false;
                match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => view.info(&format!("!! {error}; Ctrl-D quits")),
                    Err(panicked) => std::panic::resume_unwind(panicked.into_panic()),
                }
            }
            // Only seen between two lines: while the editor reads a line the
            // terminal is raw and Ctrl-C arrives as a key.
            _ = tokio::signal::ctrl_c() => {
                quit.store(true, Ordering::SeqCst);
                break Ok(());
            }
        }
    };
    let left = client.leave().await;
    match &left {
        Ok(()) => view.info(".. you left"),
        Err(error) => view.info(&format!(".. could not leave cleanly: {error}")),
    }
    result
}

/// How long the prompt waits for a command to be carried out, so that it
/// shows the channel a `/join` went to.
const COMMAND_WAIT: Duration = Duration::from_secs(3);

/// The editor thread: reads lines until Ctrl-C, Ctrl-D or a failure, with
/// the session's channel in the prompt.
fn edit_lines(
    mut editor: DefaultEditor,
    client: &Client,
    inputs: mpsc::Sender<Input>,
    quit: &AtomicBool,
) {
    while !quit.load(Ordering::SeqCst) {
        let prompt = format!("{}> ", client.identity().channel);
        match editor.readline(&prompt) {
            Ok(text) => {
                if !text.trim().is_empty() {
                    let _ = editor.add_history_entry(text.as_str());
                }
                // Messages go without waiting, so typing never stalls on
                // the network; commands may change the prompt.
                let (done, command_done) = if text.trim_start().starts_with('/') {
                    let (done, command_done) = std::sync::mpsc::sync_channel(1);
                    (Some(done), Some(command_done))
                } else {
                    (None, None)
                };
                if inputs.blocking_send(Input::Line { text, done }).is_err() {
                    return;
                }
                if let Some(command_done) = command_done {
                    let _ = command_done.recv_timeout(COMMAND_WAIT);
                }
            }
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => {
                let _ = inputs.blocking_send(Input::Quit);
                return;
            }
            // A signal that interrupted the read (a window resize): read on.
            Err(ReadlineError::Signal(_)) => {}
            Err(error) => {
                let _ = inputs.blocking_send(Input::Failed(error));
                return;
            }
        }
    }
}
