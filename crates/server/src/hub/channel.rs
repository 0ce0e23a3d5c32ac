//! A channel: its ordered stream of events (the in-memory ring of the
//! history window), its members, and the polls parked on it.
//!
//! Every event is encoded once, when it is published; a poll answer is those
//! bytes spliced together. A poll parks only when it has seen every visible
//! event, so all parked polls have the same cursor, and the events that
//! become visible next make one answer for all of them: a broadcast to
//! 10,000 waiting polls builds one answer, not 10,000. Polls that ask for
//! the same range share the last answer built too.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use slab::Slab;
use talk_protocol::{ChannelName, Cursor, Reset};
use tokio::sync::watch;

use super::waiter::Parked;
use crate::store::StoredEvent;

/// What a poll finds in a channel.
pub(crate) enum Lookup<'channel> {
    /// Nothing after the cursor yet: the poll is parked until there is.
    Parked(Park<'channel>),
    /// The poll may not park here (its session is leaving the channel, or
    /// the server is stopping): it must look again.
    Left,
    /// An answer, ready to send.
    Answer(PollBody),
}

/// A poll parked in its channel; dropping it unlists the poll if it is
/// still parked.
pub(crate) struct Park<'channel> {
    channel: &'channel Channel,
    key: usize,
    waiter: &'channel dyn Parked,
}

impl Park<'_> {
    /// Takes the poll out of the channel, unless a publish or the hub has
    /// claimed it already (then the waiter has its outcome, or will soon).
    pub(crate) fn unpark(&self) -> bool {
        if !self.waiter.unpark_self() {
            return false;
        }
        let mut state = self.channel.state.lock().expect("channel lock");
        // The key may have been reused by another waiter since a publish
        // took this one's list; remove it only if it is still ours.
        if let Some(parked) = state.parked.get(self.key) {
            if std::ptr::addr_eq(Arc::as_ptr(&parked.waiter), self.waiter) {
                state.parked.remove(self.key);
            }
        }
        true
    }
}

impl Drop for Park<'_> {
    fn drop(&mut self) {
        self.unpark();
    }
}

/// A parked poll, as its channel lists it.
struct ParkedPoll {
    /// Its session, to unpark the polls of a session that moves away.
    session: usize,
    waiter: Arc<dyn Parked>,
}

/// The answer that newly visible events make for the polls that were parked
/// on the channel, and those polls, taken off the channel's list.
pub(crate) struct FanOut {
    pub(crate) body: PollBody,
    pub(super) waiters: Vec<Arc<dyn Parked>>,
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
    /// The polls waiting for the event after `visible`.
    parked: Slab<ParkedPoll>,
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
                parked: Slab::new(),
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

    /// Makes every event up to `seq` visible to polls, once it is committed;
    /// returns the answer for the parked polls, taken off the list.
    pub(crate) fn make_visible(&self, seq: u64) -> Option<FanOut> {
        let mut state = self.state.lock().expect("channel lock");
        if seq <= state.visible {
            return None;
        }
        let parked_at = state.visible;
        state.visible = seq;
        let fan_out = if state.parked.is_empty() {
            None
        } else {
            // Every parked poll has seen up to `parked_at` (it parked when
            // that was the head), so one answer is right for all of them.
            let body = state.answer_after(&self.name, parked_at);
            let waiters = state.parked.drain().map(|parked| parked.waiter).collect();
            Some(FanOut { body, waiters })
        };
        drop(state);
        self.visible_head.send_replace(seq);
        fan_out
    }

    /// The answer for a poll at `cursor`; when there is nothing after it
    /// yet, parks `waiter` on the channel, if `stays` says it may. `stays`
    /// is asked under the channel's lock, so that a session that starts to
    /// leave the channel afterwards finds the poll here and unparks it.
    pub(crate) fn lookup_or_park<'channel>(
        &'channel self,
        cursor: &Cursor,
        history_len: usize,
        session: &super::Session,
        waiter: &'channel Arc<impl Parked + 'static>,
        stays: impl FnOnce() -> bool,
    ) -> Lookup<'channel> {
        let mut state = self.state.lock().expect("channel lock");
        if cursor.epoch != state.epoch {
            return Lookup::Answer(state.history(&self.name, Reset::Epoch, history_len));
        }
        if cursor.seq == state.visible {
            if !stays() {
                return Lookup::Left;
            }
            waiter.park();
            let key = state.parked.insert(ParkedPoll {
                session: session_id(session),
                waiter: waiter.clone(),
            });
            return Lookup::Parked(Park {
                channel: self,
                key,
                waiter: &**waiter,
            });
        }
        let oldest = state
            .ring
            .front()
            .map_or(state.visible + 1, |event| event.seq);
        if cursor.seq > state.visible || cursor.seq + 1 < oldest {
            return Lookup::Answer(state.history(&self.name, Reset::Gap, history_len));
        }
        Lookup::Answer(state.answer_after(&self.name, cursor.seq))
    }

    /// Unparks the polls of `session` (which is switching channels or
    /// ending) and wakes them, so that none is answered with what comes
    /// next here.
    pub(crate) fn unpark_session(&self, session: &super::Session) {
        let id = session_id(session);
        let mut state = self.state.lock().expect("channel lock");
        state.parked.retain(|_, parked| {
            if parked.session != id {
                return true;
            }
            parked.waiter.unpark();
            false
        });
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

/// Tells sessions apart in the parked list without holding them.
fn session_id(session: &super::Session) -> usize {
    std::ptr::from_ref(session).addr()
}

impl ChannelState {
    /// The answer with every visible event after `from_seq`, which must be
    /// in the window and before `visible`; the last one built is shared.
    fn answer_after(&mut self, name: &ChannelName, from_seq: u64) -> PollBody {
        let visible = self.visible;
        if let Some((from, to, body)) = &self.last_answer {
            if *from == from_seq && *to == visible {
                return body.clone();
            }
        }
        let oldest = self.ring.front().map_or(visible + 1, |event| event.seq);
        let skip = (from_seq + 1 - oldest) as usize;
        let count = (visible - from_seq) as usize;
        let events = self
            .ring
            .iter()
            .skip(skip)
            .take(count)
            .map(|event| &event.body[..]);
        let cursor = Cursor {
            epoch: self.epoch.clone(),
            seq: visible,
        };
        let json = talk_protocol::poll_answer_json(name.as_str(), &cursor, events, None, false);
        let body = PollBody {
            json: Bytes::from(json),
            n_events: count,
        };
        self.last_answer = Some((from_seq, visible, body.clone()));
        body
    }

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

#[cfg(test)]
mod tests {
    use talk_protocol::{Color, Name};

    use super::super::waiter::{Deliver, Delivery, Waiter};
    use super::super::Session;
    use super::*;

    /// A sink that sends everything at once.
    struct Sends;

    impl Deliver for Sends {
        fn deliver(&self, _body: &PollBody) -> Delivery {
            Delivery::Sent
        }
    }

    fn channel() -> Arc<Channel> {
        Arc::new(Channel::new(
            ChannelName::default_channel(),
            "epoch".into(),
            0,
            Vec::new(),
            100,
        ))
    }

    fn session(channel: &Arc<Channel>, name: &str) -> Session {
        let color = Color::parse("ffcc00").unwrap();
        Session::new(
            Arc::from(name),
            Name::parse(name).unwrap(),
            color,
            channel.clone(),
        )
    }

    fn head(channel: &Channel) -> Cursor {
        Cursor {
            epoch: "epoch".into(),
            seq: channel.state.lock().unwrap().visible,
        }
    }

    /// Adds one committed event to the channel; returns its fan-out.
    fn publish(channel: &Channel) -> Option<FanOut> {
        let (Assigned::New(seq), _) = channel.assign(None, |_| Bytes::from_static(b"{}")) else {
            panic!("a new event");
        };
        channel.make_visible(seq)
    }

    fn n_parked(channel: &Channel) -> usize {
        channel.state.lock().unwrap().parked.len()
    }

    #[test]
    fn parked_polls_share_one_answer_and_leave_the_list_with_it() {
        let channel = channel();
        let (ada, bob) = (session(&channel, "ada"), session(&channel, "bob"));
        let waiters = [Arc::new(Waiter::new(Sends)), Arc::new(Waiter::new(Sends))];
        let cursor = head(&channel);
        let parks: Vec<_> = [(&ada, &waiters[0]), (&bob, &waiters[1])]
            .into_iter()
            .map(|(session, waiter)| {
                let Lookup::Parked(park) =
                    channel.lookup_or_park(&cursor, 10, session, waiter, || true)
                else {
                    panic!("nothing to answer yet: the poll parks");
                };
                park
            })
            .collect();
        assert_eq!(n_parked(&channel), 2);
        let fan_out = publish(&channel).expect("two polls to answer");
        assert_eq!((fan_out.waiters.len(), fan_out.body.n_events), (2, 1));
        assert_eq!(n_parked(&channel), 0);
        drop(parks);
        assert!(publish(&channel).is_none(), "nobody is parked any more");
    }

    #[test]
    fn a_session_leaving_unparks_its_own_polls_only() {
        let channel = channel();
        let (ada, bob) = (session(&channel, "ada"), session(&channel, "bob"));
        let (ada_waiter, bob_waiter) = (Arc::new(Waiter::new(Sends)), Arc::new(Waiter::new(Sends)));
        let cursor = head(&channel);
        let _ada_park = channel.lookup_or_park(&cursor, 10, &ada, &ada_waiter, || true);
        let _bob_park = channel.lookup_or_park(&cursor, 10, &bob, &bob_waiter, || true);
        channel.unpark_session(&ada);
        assert_eq!(n_parked(&channel), 1);
        let fan_out = publish(&channel).expect("bob is still parked");
        assert_eq!(fan_out.waiters.len(), 1);
        // A poll that is leaving the channel is not parked at all.
        let carol = session(&channel, "carol");
        let carol_waiter = Arc::new(Waiter::new(Sends));
        let cursor = head(&channel);
        let lookup = channel.lookup_or_park(&cursor, 10, &carol, &carol_waiter, || false);
        assert!(matches!(lookup, Lookup::Left));
        assert_eq!(n_parked(&channel), 0);
    }

    #[test]
    fn a_park_that_is_dropped_unlists_itself() {
        let channel = channel();
        let ada = session(&channel, "ada");
        let waiter = Arc::new(Waiter::new(Sends));
        let cursor = head(&channel);
        let park = channel.lookup_or_park(&cursor, 10, &ada, &waiter, || true);
        assert_eq!(n_parked(&channel), 1);
        drop(park);
        assert_eq!(n_parked(&channel), 0);
        assert!(publish(&channel).is_none());
    }
}
