//! A stand-in for a newer talk server, for what the real one never sends
//! (event types, reset values and replies it does not have yet): a real
//! HTTP server on an ephemeral loopback port that answers each poll with
//! the next of a list of canned answers, and each send with one canned
//! answer, and hands the test the body of every poll it gets. It stops
//! when the handle is dropped (also when a test fails).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use tokio::sync::{mpsc, oneshot};

/// A running canned server; dropping it shuts the server down.
pub(crate) struct CannedServer {
    pub(crate) url: String,
    /// The body of every poll, in the order they came.
    pub(crate) polls: mpsc::UnboundedReceiver<serde_json::Value>,
    _shutdown: oneshot::Sender<()>,
}

struct Canned {
    poll_answers: Mutex<VecDeque<String>>,
    broadcast_answer: String,
    polls: mpsc::UnboundedSender<serde_json::Value>,
}

/// Starts a server that answers the polls with `poll_answers`, in order,
/// and then holds every poll for ever (as a server holds a poll while
/// nothing happens), and answers every broadcast with `broadcast_answer`.
pub(crate) async fn start(poll_answers: Vec<String>, broadcast_answer: String) -> CannedServer {
    let (poll_sender, polls) = mpsc::unbounded_channel();
    let canned = Arc::new(Canned {
        poll_answers: Mutex::new(poll_answers.into()),
        broadcast_answer,
        polls: poll_sender,
    });
    let router = Router::new()
        .route("/poll", post(poll))
        .route("/broadcast", post(broadcast))
        .with_state(canned);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a loopback port");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                // Resolves when the handle is dropped, too.
                let _ = stopped.await;
            })
            .await
    });
    CannedServer {
        url,
        polls,
        _shutdown: shutdown,
    }
}

async fn poll(State(canned): State<Arc<Canned>>, body: String) -> impl IntoResponse {
    let request = serde_json::from_str(&body).expect("a poll body is JSON");
    // The test may have stopped listening; the answer is what matters then.
    let _ = canned.polls.send(request);
    let next = canned.poll_answers.lock().unwrap().pop_front();
    match next {
        Some(answer) => json(answer),
        None => std::future::pending().await,
    }
}

async fn broadcast(State(canned): State<Arc<Canned>>) -> impl IntoResponse {
    json(canned.broadcast_answer.clone())
}

fn json(body: String) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}
