//! The write side of a connection, shared with the hub so that a publish
//! can write a parked poll's answer straight to the socket.
//!
//! In a fan-out to thousands of held polls the answer is the same for all
//! of them (one channel, one cursor), and so is its HTTP head unless the
//! allow-list grants different origins: the whole answer is encoded once
//! per fan-out and written with one non-blocking `send` per socket, without
//! waking the polls' tasks. A write that cannot be made at once, or that
//! must close the connection after it, is left to the poll's own task.

use std::cell::RefCell;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::stream::LeanStream;
use crate::http::answer::JsonAnswer;
use crate::http::cors::{ChatCors, OriginCheck};
use crate::http::phase::{Activity, Phase};
use crate::http::registry::LeanConnection;
use crate::http::state::Connections;
use crate::hub::{Deliver, Delivery, PollBody, Waiter};

/// A connection's write half, and what the answer to its held poll needs.
pub(crate) struct SocketSink<S: LeanStream> {
    write: S::Write,
    connections: Arc<Connections>,
    /// What the connection is doing, for the registry of connections: here
    /// because the sink is already shared, so it costs one word.
    pub(crate) phase: Phase,
    /// The held poll's request, as its answer's head depends on it.
    request: Mutex<PollHead>,
    /// What a delivery began and could not finish, for the poll's task.
    rest: Mutex<Option<Bytes>>,
}

/// What of a poll's request shapes its answer's head.
#[derive(Clone, Copy)]
struct PollHead {
    origin: OriginCheck,
    /// The client asked to close the connection after the answer.
    close: bool,
}

impl<S: LeanStream> SocketSink<S> {
    pub(crate) fn new(write: S::Write, connections: Arc<Connections>) -> Self {
        SocketSink {
            write,
            phase: Phase::new(Activity::Idle(connections.clock.deadline_from_now())),
            connections,
            request: Mutex::new(PollHead {
                origin: OriginCheck::Any,
                close: false,
            }),
            rest: Mutex::new(None),
        }
    }

    /// Notes the request of the poll about to be held.
    pub(crate) fn hold(&self, origin: OriginCheck, close: bool) {
        *self.request.lock().expect("sink lock") = PollHead { origin, close };
    }

    /// Writes all of `bytes`, waiting for room in the socket when it has none.
    pub(crate) async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match S::try_write(&self.write, bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => bytes = &bytes[written..],
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    S::writable(&self.write).await?;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Writes `answer` to a request from `origin`: false when the
    /// connection is to end, as the write failed or the answer closes it
    /// (the client asked to, or the server is stopping).
    pub(crate) async fn write_answer(
        &self,
        answer: &JsonAnswer,
        origin: OriginCheck,
        asked_to_close: bool,
    ) -> bool {
        let close = asked_to_close || self.connections.closing.is_cancelled();
        let bytes = answer.encode(self.cors(origin), close);
        self.write_all(&bytes).await.is_ok() && !close
    }

    /// What decides the CORS headers of an answer to `origin`. A refused
    /// origin's request never gets here: the router answers it.
    fn cors(&self, origin: OriginCheck) -> ChatCors<'_> {
        ChatCors {
            allow_origins: &self.connections.app.config.allow_origins,
            origin,
            refused_origin: None,
        }
    }

    /// Writes what a delivery began and could not finish.
    pub(crate) async fn finish(&self) -> io::Result<()> {
        let rest = self.rest.lock().expect("sink lock").take();
        match rest {
            Some(rest) => self.write_all(&rest).await,
            None => Ok(()),
        }
    }

    /// The write half, to give the connection back whole.
    pub(crate) fn into_write_half(self) -> S::Write {
        self.write
    }
}

/// The registry of connections reaches a lean connection through the
/// waiter its polls park, which holds the sink.
impl<S: LeanStream> LeanConnection for Waiter<SocketSink<S>> {
    fn phase(&self) -> &Phase {
        &self.sink().phase
    }

    fn shut_down(&self) {
        S::shut_down(&self.sink().write);
    }
}

impl<S: LeanStream> Deliver for SocketSink<S> {
    fn deliver(&self, body: &PollBody) -> Delivery {
        let request = *self.request.lock().expect("sink lock");
        // Closing is the poll's task's to do, after the answer.
        if request.close || self.connections.closing.is_cancelled() {
            return Delivery::Declined;
        }
        let answer = encoded_answer(body, self.cors(request.origin));
        match S::try_write(&self.write, &answer) {
            Ok(written) if written == answer.len() => Delivery::Sent,
            Ok(written) => {
                *self.rest.lock().expect("sink lock") = Some(answer.slice(written..));
                Delivery::Begun
            }
            // No room now, or a broken connection: the task writes it, and
            // learns which.
            Err(_) => Delivery::Declined,
        }
    }
}

/// The last answer encoded on this thread, with the body and origin it was
/// encoded for. Holding the body keeps its bytes alive, so a body at the same
/// address is the same body.
struct EncodedAnswer {
    body: Bytes,
    origin: OriginCheck,
    answer: Bytes,
}

thread_local! {
    /// One per runtime thread, so no lock is taken in the fan-out. Its date
    /// is that of the fan-out's first answer: a fan-out takes milliseconds.
    static LAST_ENCODED: RefCell<Option<EncodedAnswer>> = const { RefCell::new(None) };
}

/// The whole answer (head and body) for a poll from `origin`, encoded once
/// for all the polls of a fan-out that have the same head.
fn encoded_answer(body: &PollBody, cors: ChatCors<'_>) -> Bytes {
    LAST_ENCODED.with_borrow_mut(|last| {
        if let Some(last) = last {
            if last.origin == cors.origin
                && last.body.as_ptr() == body.json.as_ptr()
                && last.body.len() == body.json.len()
            {
                return last.answer.clone();
            }
        }
        let encoded = JsonAnswer::ok(body.json.clone()).encode(cors, false);
        let answer = Bytes::from(encoded);
        *last = Some(EncodedAnswer {
            body: body.json.clone(),
            origin: cors.origin,
            answer: answer.clone(),
        });
        answer
    })
}
