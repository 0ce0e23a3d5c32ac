//! A channel: its ordered stream of events (the in-memory ring of the
//! history window), its members, and the wake-up of the polls that wait on it.
//!
//! Every event is encoded once, when it is published; a poll answer is those
//! bytes spliced together. Most waiting polls have the same cursor (they all
//! got the previous event), so the last answer built is kept and shared by
//! every poll that asks for the same range: a broadcast to 10,000 waiting
//! polls builds one answer, not 10,000.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use talk_protocol::{ChannelName, Cursor, Reset};
use tokio::sync::watch;

use crate::store::StoredEvent;

/// What a poll finds in a channel.
pub(crate) enum Lookup {
    /// Nothing after the cursor yet: wait.
    Nothing,
    /// An answer, ready to send.
    Answer(PollBody),
}

/// A complete poll answer, encoded.
#[derive(Clone)]
pub(crate) struct PollBody {
    /// The JSON of the answer.
    pub(crate) json: Bytes,
    /// How many events it carries, for metrics.
    pub(crate) n_events: usize,
}

/// One channel of the hub.
pub(crate) struct Channel {
    pub(crate) name: ChannelName,
    state: Mutex<ChannelState>,
    /// The sequence number of the last committed event; polls wait on it.
    visible_head: watch::Sender<u64>,
}

struct ChannelState {
    epoch: String,
    /// The last sequence number given out (committed or not).
    last_assigned: u64,
    /// The last sequence number committed to the store; polls see up to here.
    visible: u64,
    /// The history window, oldest first; may hold events not yet visible.
    ring: VecDeque<StoredEvent>,
    /// The send ids of the messages in the ring, to recognise retries.
    send_ids: HashMap<String, u64>,
    /// Tokens of the sessions in this channel.
    members: HashMap<Arc<str>, ()>,
    window: usize,
    /// The last answer built for a cursor, shared by every poll with that cursor.
    last_answer: Option<(u64, u64, PollBody)>,
    /// The last history answer built, keyed by its head and reset reason.
    last_history: Option<(u64, Reset, PollBody)>,
}

/// What `Channel::assign` did with a message whose send id it was given.
pub(crate) enum Assigned {
    /// A new event at this position; commit it, then `make_visible`.
    New(u64),
    /// A retry of the message at this position; nothing was added.
    Duplicate(u64),
}

impl Channel {
    pub(crate) fn new(
        name: ChannelName,
        epoch: String,
        head: u64,
        events: Vec<StoredEvent>,
        window: usize,
    ) -> Self {
        let send_ids = events
            .iter()
            .filter_map(|event| Some((event.send_id.clone()?, event.seq)))
            .collect();
        Channel {
            name,
            state: Mutex::new(ChannelState {
                epoch,
                last_assigned: head,
                visible: head,
                ring: events.into(),
                send_ids,
                members: HashMap::new(),
                window,
                last_answer: None,
                last_history: None,
            }),
            visible_head: watch::channel(head).0,
        }
    }

    /// A receiver that fires when new events become visible.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.visible_head.subscribe()
    }

    /// Gives the next position to an event built by `build` and adds it to the
    /// ring, unless `send_id` is already there. Returns the position, and the
    /// stored event to hand to the store.
    pub(crate) fn assign(
        &self,
        send_id: Option<&str>,
        build: impl FnOnce(u64) -> Bytes,
    ) -> (Assigned, Option<StoredEvent>) {
        let mut state = self.state.lock().expect("channel lock");
        if let Some(seq) = send_id.and_then(|id| state.send_ids.get(id)) {
            return (Assigned::Duplicate(*seq), None);
        }
        state.last_assigned += 1;
        let seq = state.last_assigned;
        let event = StoredEvent {
            seq,
            send_id: send_id.map(str::to_owned),
            body: build(seq),
        };
        if let Some(id) = send_id {
            state.send_ids.insert(id.to_owned(), seq);
        }
        state.ring.push_back(event.clone());
        while state.ring.len() > state.window {
            if let Some(old) = state.ring.pop_front() {
                if let Some(id) = old.send_id {
                    state.send_ids.remove(&id);
                }
            }
        }
        (Assigned::New(seq), Some(event))
    }

    /// Makes every event up to `seq` visible to polls, once it is committed.
    pub(crate) fn make_visible(&self, seq: u64) {
        let mut state = self.state.lock().expect("channel lock");
        if seq > state.visible {
            state.visible = seq;
            drop(state);
            self.visible_head.send_replace(seq);
        }
    }

    /// The answer for a poll at `cursor`, or `Nothing` when it must wait.
    pub(crate) fn lookup(&self, cursor: &Cursor, history_len: usize) -> Lookup {
        let mut state = self.state.lock().expect("channel lock");
        if cursor.epoch != state.epoch {
            return Lookup::Answer(state.history(&self.name, Reset::Epoch, history_len));
        }
        if cursor.seq == state.visible {
            return Lookup::Nothing;
        }
        let oldest = state
            .ring
            .front()
            .map_or(state.visible + 1, |event| event.seq);
        if cursor.seq > state.visible || cursor.seq + 1 < oldest {
            return Lookup::Answer(state.history(&self.name, Reset::Gap, history_len));
        }
        let visible = state.visible;
        if let Some((from, to, body)) = &state.last_answer {
            if *from == cursor.seq && *to == visible {
                return Lookup::Answer(body.clone());
            }
        }
        let skip = (cursor.seq + 1 - oldest) as usize;
        let count = (visible - cursor.seq) as usize;
        let events = state
            .ring
            .iter()
            .skip(skip)
            .take(count)
            .map(|event| &event.body[..]);
        let cursor = Cursor {
            epoch: state.epoch.clone(),
            seq: visible,
        };
        let json =
            talk_protocol::poll_answer_json(self.name.as_str(), &cursor, events, None, false);
        let body = PollBody {
            json: Bytes::from(json),
            n_events: count,
        };
        state.last_answer = Some((cursor.seq - count as u64, visible, body.clone()));
        Lookup::Answer(body)
    }

    /// The channel's latest history as an answer that replaces the client's view.
    pub(crate) fn history(&self, reset: Reset, history_len: usize) -> PollBody {
        self.state
            .lock()
            .expect("channel lock")
            .history(&self.name, reset, history_len)
    }

    /// An answer with no events at the channel's head, with `reconnect` set
    /// when the server is going away.
    pub(crate) fn empty_answer(&self, cursor: &Cursor, reconnect: bool) -> PollBody {
        let json = talk_protocol::poll_answer_json(
            self.name.as_str(),
            cursor,
            std::iter::empty(),
            None,
            reconnect,
        );
        PollBody {
            json: Bytes::from(json),
            n_events: 0,
        }
    }

    /// Adds a member; returns how many members the channel has now.
    pub(crate) fn add_member(&self, token: &Arc<str>) -> usize {
        let mut state = self.state.lock().expect("channel lock");
        state.members.insert(token.clone(), ());
        state.members.len()
    }

    /// Removes a member; returns how many members the channel had before.
    pub(crate) fn remove_member(&self, token: &str) -> usize {
        let mut state = self.state.lock().expect("channel lock");
        let before = state.members.len();
        state.members.remove(token);
        before
    }

    /// The tokens of the members.
    pub(crate) fn member_tokens(&self) -> Vec<Arc<str>> {
        self.state
            .lock()
            .expect("channel lock")
            .members
            .keys()
            .cloned()
            .collect()
    }

    /// How many members the channel has.
    pub(crate) fn n_members(&self) -> usize {
        self.state.lock().expect("channel lock").members.len()
    }

    /// The oldest position the channel may forget, keeping the window on disk.
    pub(crate) fn prunable_up_to(&self) -> Option<u64> {
        let state = self.state.lock().expect("channel lock");
        let first_kept = state.ring.front()?.seq;
        (first_kept > 1).then(|| first_kept - 1)
    }
}

impl ChannelState {
    fn history(&mut self, name: &ChannelName, reset: Reset, history_len: usize) -> PollBody {
        let visible = self.visible;
        if let Some((head, cached_reset, body)) = &self.last_history {
            if *head == visible && *cached_reset == reset {
                return body.clone();
            }
        }
        let visible_events = self.ring.iter().filter(|event| event.seq <= visible);
        let n_visible = visible_events.clone().count();
        let skip = n_visible.saturating_sub(history_len);
        let events = visible_events.skip(skip).map(|event| &event.body[..]);
        let cursor = Cursor {
            epoch: self.epoch.clone(),
            seq: visible,
        };
        let json =
            talk_protocol::poll_answer_json(name.as_str(), &cursor, events, Some(reset), false);
        let body = PollBody {
            json: Bytes::from(json),
            n_events: n_visible - skip,
        };
        self.last_history = Some((visible, reset, body.clone()));
        body
    }
}
