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
use std::time::{Duration, Instant};

use bytes::Bytes;
use slab::Slab;
use talk_protocol::{ChannelName, Cursor, Reset};
use tokio::sync::oneshot;

use super::answer::PollBody;
use super::waiter::Parked;
use crate::store::{self, SendKey, StoredEvent};

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
    session: SessionKey,
    waiter: Arc<dyn Parked>,
}

/// The answer that newly visible events make for the polls that were parked
/// on the channel, and those polls, taken off the channel's list.
pub(crate) struct FanOut {
    pub(crate) body: PollBody,
    pub(super) waiters: Vec<Arc<dyn Parked>>,
}

/// One channel of the hub.
pub(crate) struct Channel {
    pub(crate) name: ChannelName,
    state: Mutex<ChannelState>,
}

struct ChannelState {
    epoch: Arc<str>,
    /// Moves on each time the channel takes back its uncommitted events
    /// after a failed commit; the store refuses what was queued before.
    generation: u64,
    /// The last sequence number given out (committed or not).
    last_assigned: u64,
    /// The last sequence number committed to the store; polls see up to here.
    visible: u64,
    /// The history window, oldest first; may hold events not yet visible.
    ring: VecDeque<StoredEvent>,
    /// The send keys of the messages in the ring, to recognise retries.
    send_ids: HashMap<SendKey, u64>,
    /// Retries of messages not committed yet, by the original's position:
    /// each hears how the original's commit ends. Nearly always empty.
    retries_waiting: Vec<(u64, oneshot::Sender<Result<(), store::Error>>)>,
    /// Tokens of the sessions in this channel.
    members: HashMap<Arc<str>, ()>,
    window: usize,
    /// The last answer built for a cursor, shared by every poll with that cursor.
    last_answer: Option<(u64, u64, PollBody)>,
    /// The last history answer built, keyed by its head and reset reason.
    last_history: Option<(u64, Reset, PollBody)>,
    /// The polls waiting for the event after `visible`.
    parked: Slab<ParkedPoll>,
    /// When a member came or went or an event was published: a channel idle
    /// for long enough leaves memory. (A poll parks only in its session's
    /// channel, of which the session is a member.)
    last_active: Instant,
}

/// What `Channel::publish` did with an event.
pub(crate) enum Published<Queued> {
    /// A new event at `seq`, queued for the store as `queued`.
    New { seq: u64, queued: Queued },
    /// A retry of a message that is visible (so committed) at `seq`.
    Visible(u64),
    /// A retry of a message at `seq` that is not committed yet: `original`
    /// hears how its commit ends.
    InFlight {
        seq: u64,
        original: oneshot::Receiver<Result<(), store::Error>>,
    },
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
            .filter_map(|event| Some((event.send.clone()?, event.seq)))
            .collect();
        Channel {
            name,
            state: Mutex::new(ChannelState {
                epoch: epoch.into(),
                generation: 0,
                last_assigned: head,
                visible: head,
                ring: events.into(),
                send_ids,
                retries_waiting: Vec::new(),
                members: HashMap::new(),
                window,
                last_answer: None,
                last_history: None,
                parked: Slab::new(),
                last_active: Instant::now(),
            }),
        }
    }

    /// Gives the next position to an event built by `build`, adds it to the
    /// ring and hands it to `queue` (with the channel's epoch and
    /// generation) for the store, unless `send` is a retry of a message in
    /// the ring.
    ///
    /// `queue` runs under the channel's lock, so that the events of a
    /// channel reach the store in sequence order: the store commits in queue
    /// order, and a later event committed first would make an earlier,
    /// uncommitted one visible with it.
    pub(crate) fn publish<Queued>(
        &self,
        send: Option<SendKey>,
        build: impl FnOnce(u64) -> Bytes,
        queue: impl FnOnce(&Arc<str>, u64, StoredEvent) -> Queued,
    ) -> Published<Queued> {
        let mut state = self.state.lock().expect("channel lock");
        if let Some(seq) = send.as_ref().and_then(|key| state.send_ids.get(key)) {
            let seq = *seq;
            if seq <= state.visible {
                return Published::Visible(seq);
            }
            let (tell, original) = oneshot::channel();
            state.retries_waiting.push((seq, tell));
            return Published::InFlight { seq, original };
        }
        state.last_assigned += 1;
        state.last_active = Instant::now();
        let seq = state.last_assigned;
        let event = StoredEvent {
            seq,
            send,
            body: build(seq),
        };
        if let Some(key) = &event.send {
            state.send_ids.insert(key.clone(), seq);
        }
        state.ring.push_back(event.clone());
        while state.ring.len() > state.window {
            if let Some(old) = state.ring.pop_front() {
                if let Some(key) = old.send {
                    state.send_ids.remove(&key);
                }
            }
        }
        let queued = queue(&state.epoch, state.generation, event);
        Published::New { seq, queued }
    }

    /// Takes back every event that is not committed, after a commit of
    /// `generation` failed: they leave the ring and the send ids, and the
    /// next position is the one after the last committed event again, so
    /// positions stay gapless. A failure of an older generation was
    /// handled when it first came.
    pub(crate) fn take_back_uncommitted(&self, generation: u64) {
        let mut state = self.state.lock().expect("channel lock");
        if generation != state.generation {
            return;
        }
        state.generation += 1;
        let visible = state.visible;
        while state.ring.back().is_some_and(|event| event.seq > visible) {
            if let Some(key) = state.ring.pop_back().and_then(|event| event.send) {
                state.send_ids.remove(&key);
            }
        }
        state.last_assigned = visible;
        tell_retries(&mut state.retries_waiting, |original| {
            (original > visible).then_some(Err(store::Error::EarlierCommitFailed))
        });
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
        tell_retries(&mut state.retries_waiting, |original| {
            (original <= seq).then_some(Ok(()))
        });
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
        session: SessionKey,
        waiter: &'channel Arc<impl Parked + 'static>,
        stays: impl FnOnce() -> bool,
    ) -> Lookup<'channel> {
        let mut state = self.state.lock().expect("channel lock");
        if *cursor.epoch != *state.epoch {
            return Lookup::Answer(state.history(&self.name, Reset::Epoch, history_len));
        }
        if cursor.seq == state.visible {
            if !stays() {
                return Lookup::Left;
            }
            waiter.park();
            let key = state.parked.insert(ParkedPoll {
                session,
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
    pub(crate) fn unpark_session(&self, session: SessionKey) {
        let mut state = self.state.lock().expect("channel lock");
        state.parked.retain(|_, parked| {
            if parked.session != session {
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
        state.last_active = Instant::now();
        state.members.len()
    }

    /// Removes a member; returns how many members the channel had before.
    pub(crate) fn remove_member(&self, token: &str) -> usize {
        let mut state = self.state.lock().expect("channel lock");
        let before = state.members.len();
        state.members.remove(token);
        state.last_active = Instant::now();
        before
    }

    /// Whether the channel may leave memory: nobody is in it or waits in
    /// it, every event it gave out is committed (or taken back), and it has
    /// been so for `idle` as of `now`. Only a member publishes to a channel,
    /// so once this is true nothing will write to this copy of it again.
    pub(crate) fn is_idle(&self, now: Instant, idle: Duration) -> bool {
        let state = self.state.lock().expect("channel lock");
        state.members.is_empty()
            && state.parked.is_empty()
            && state.visible == state.last_assigned
            && now.saturating_duration_since(state.last_active) >= idle
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

/// Tells the retries waiting for an original what `outcome` says of it,
/// if anything yet, and forgets them.
fn tell_retries(
    retries_waiting: &mut Vec<(u64, oneshot::Sender<Result<(), store::Error>>)>,
    outcome: impl Fn(u64) -> Option<Result<(), store::Error>>,
) {
    if retries_waiting.is_empty() {
        return;
    }
    let mut index = 0;
    while index < retries_waiting.len() {
        match outcome(retries_waiting[index].0) {
            Some(result) => {
                let (_, tell) = retries_waiting.swap_remove(index);
                // The retry's sender may have hung up.
                let _ = tell.send(result);
            }
            None => index += 1,
        }
    }
}

/// Tells sessions apart in the parked list without holding them (or
/// knowing what they are): the address of the session, which no other
/// session has while it is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionKey(usize);

impl SessionKey {
    pub(crate) fn of<Session>(session: &Session) -> Self {
        SessionKey(std::ptr::from_ref(session).addr())
    }
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
            epoch: self.epoch.to_string(),
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
            epoch: self.epoch.to_string(),
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
        let seq = post(channel, None);
        channel.make_visible(seq)
    }

    /// Adds an event (a message with send id `id` from ada, if given) and
    /// queues it nowhere; returns its position.
    fn post(channel: &Channel, id: Option<&str>) -> u64 {
        let send = id.map(|id| SendKey {
            sender: "ada".into(),
            id: id.into(),
        });
        match channel.publish(send, |_| Bytes::from_static(b"{}"), |_, _, _| ()) {
            Published::New { seq, .. } => seq,
            _ => panic!("a new event"),
        }
    }

    /// The generation, last position given out, visible head and ring.
    fn positions(channel: &Channel) -> (u64, u64, u64, Vec<u64>) {
        let state = channel.state.lock().unwrap();
        let ring = state.ring.iter().map(|event| event.seq).collect();
        (state.generation, state.last_assigned, state.visible, ring)
    }

    #[test]
    fn a_failed_commit_takes_back_every_uncommitted_event_once() {
        let channel = channel();
        for id in ["a", "b", "c", "d"] {
            post(&channel, Some(id));
        }
        channel.make_visible(2);
        // A retry of an uncommitted message waits for its original.
        let Published::InFlight { seq: 3, original } =
            channel.publish(Some(key("c")), |_| Bytes::new(), |_, _, _| ())
        else {
            panic!("c is in flight");
        };
        channel.take_back_uncommitted(0);
        assert_eq!(positions(&channel), (1, 2, 2, vec![1, 2]));
        assert!(matches!(
            original.blocking_recv(),
            Ok(Err(store::Error::EarlierCommitFailed))
        ));
        // A failure reported late, of the generation already taken back,
        // takes nothing more: 3 is a new event of the new generation.
        assert_eq!(post(&channel, Some("c")), 3);
        channel.take_back_uncommitted(0);
        assert_eq!(positions(&channel), (1, 3, 2, vec![1, 2, 3]));
        // A retry of a committed message is visible at once.
        assert!(matches!(
            channel.publish(Some(key("a")), |_| Bytes::new(), |_, _, _| ()),
            Published::Visible(1)
        ));
    }

    #[test]
    fn a_retry_in_flight_hears_that_its_original_was_committed() {
        let channel = channel();
        post(&channel, Some("a"));
        let Published::InFlight { seq: 1, original } =
            channel.publish(Some(key("a")), |_| Bytes::new(), |_, _, _| ())
        else {
            panic!("a is in flight");
        };
        channel.make_visible(1);
        assert!(matches!(original.blocking_recv(), Ok(Ok(()))));
        // Another sender's message with the same id is a new one.
        let bob = SendKey {
            sender: "bob".into(),
            id: "a".into(),
        };
        assert!(matches!(
            channel.publish(Some(bob), |_| Bytes::new(), |_, _, _| ()),
            Published::New { seq: 2, .. }
        ));
    }

    fn key(id: &str) -> SendKey {
        SendKey {
            sender: "ada".into(),
            id: id.into(),
        }
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
                    channel.lookup_or_park(&cursor, 10, session.key(), waiter, || true)
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
        let _ada_park = channel.lookup_or_park(&cursor, 10, ada.key(), &ada_waiter, || true);
        let _bob_park = channel.lookup_or_park(&cursor, 10, bob.key(), &bob_waiter, || true);
        channel.unpark_session(ada.key());
        assert_eq!(n_parked(&channel), 1);
        let fan_out = publish(&channel).expect("bob is still parked");
        assert_eq!(fan_out.waiters.len(), 1);
        // A poll that is leaving the channel is not parked at all.
        let carol = session(&channel, "carol");
        let carol_waiter = Arc::new(Waiter::new(Sends));
        let cursor = head(&channel);
        let lookup = channel.lookup_or_park(&cursor, 10, carol.key(), &carol_waiter, || false);
        assert!(matches!(lookup, Lookup::Left));
        assert_eq!(n_parked(&channel), 0);
    }

    #[test]
    fn a_park_that_is_dropped_unlists_itself() {
        let channel = channel();
        let ada = session(&channel, "ada");
        let waiter = Arc::new(Waiter::new(Sends));
        let cursor = head(&channel);
        let park = channel.lookup_or_park(&cursor, 10, ada.key(), &waiter, || true);
        assert_eq!(n_parked(&channel), 1);
        drop(park);
        assert_eq!(n_parked(&channel), 0);
        assert!(publish(&channel).is_none());
    }
}
