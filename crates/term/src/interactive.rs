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

use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};
use talk_client::Client;
use tokio::sync::{mpsc, watch};

use crate::format::Style;
use crate::view::{self, Progress, Screen, View};
use crate::Error;

/// What the editor thread hands the chat.
enum Input {
    /// A line typed and entered.
    Line(String),
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
    let (progress_sender, progress) = watch::channel(Progress {
        channel: identity.channel,
        ..Progress::default()
    });
    let mut poller = tokio::spawn(view::show_updates(
        client.clone(),
        view.clone(),
        progress_sender,
    ));
    let (input_sender, mut inputs) = mpsc::channel(16);
    let quit = Arc::new(AtomicBool::new(false));
    let editor_quit = Arc::clone(&quit);
    std::thread::spawn(move || edit_lines(editor, progress, input_sender, &editor_quit));

    let mut poller_running = true;
    let result = loop {
        tokio::select! {
            input = inputs.recv() => match input {
                Some(Input::Line(line)) => {
                    let text = line.trim();
                    if text.is_empty() {
                        continue;
                    }
                    match client.send(text).await {
                        Ok(answer) => view.answer(&answer)?,
                        Err(error) => view.refusal(&error)?,
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

/// The editor thread: reads lines until Ctrl-C, Ctrl-D or a failure, with
/// the current channel in the prompt.
fn edit_lines(
    mut editor: DefaultEditor,
    progress: watch::Receiver<Progress>,
    inputs: mpsc::Sender<Input>,
    quit: &AtomicBool,
) {
    while !quit.load(Ordering::SeqCst) {
        let prompt = format!("{}> ", progress.borrow().channel);
        match editor.readline(&prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                if inputs.blocking_send(Input::Line(line)).is_err() {
                    return;
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
