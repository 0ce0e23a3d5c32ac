/*! talk.js: the talk chat widget and the full-page chat. Plain JavaScript,
 * no framework, no build step. Embed with
 *   <link rel="stylesheet" href="https://chat.example/talk.css">
 *   <script src="https://chat.example/talk.js" defer></script>
 * The chat server is the folder this script was loaded from (or data-server).
 *
 * One tab per browser and site holds the long-poll (the "leader", elected with
 * Web Locks, or a localStorage lease where Web Locks are missing); it shares
 * every poll answer with the other tabs over a BroadcastChannel and sends for
 * them, so ten tabs still use one connection for polling.
 *
 * Three objects own all the state, wired together at the end of this file:
 * the connection (`createConnection`), the tab bus (`createTabBus`) and the
 * view (`createView`, the DOM only). */
(() => {
  'use strict';

  const script = document.currentScript;
  if (!script || !script.src) return;
  const LOADED = Symbol.for('talk.widget');
  if (window[LOADED]) return;
  window[LOADED] = true;

  // ---------------------------------------------------------------- config
  const data = script.dataset;
  const scriptDir = new URL('.', script.src).href;
  const serverBase = (() => {
    const url = new URL(data.server || scriptDir, script.src).href;
    return url.endsWith('/') ? url : url + '/';
  })();
  const PAGE_MODE = data.mode === 'page';
  const config = Object.freeze({
    channel: cleanChannel(data.channel),
    name: data.name || undefined,
    title: data.title || 'talk',
    position: data.position === 'bottom-left' ? 'bottom-left' : 'bottom-right',
    open: data.open !== 'false',
  });
  const STORE = 'talk:' + serverBase;
  const TAB = randomHex(8);
  const MAX_LINES = 400;
  /** The event types that tell who is in the channel, and how. */
  const PRESENCE_EVENT_TYPES = Object.freeze(['join', 'leave', 'nick', 'color', 'message', 'me']);
  const DEFAULT_POLL_TIMEOUT_MS = 25000;

  function cleanChannel(value) {
    if (!value) return undefined;
    const channel = value.trim().toLowerCase();
    return /^[a-z0-9_-]{1,32}$/.test(channel) ? channel : undefined;
  }

  function randomHex(bytes) {
    const buffer = new Uint8Array(bytes);
    crypto.getRandomValues(buffer);
    return Array.from(buffer, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  // localStorage may be missing or throw (disabled storage, full quota): the
  // chat still works, it only forgets the identity on reload.
  const storage = Object.freeze({
    get(key) {
      try { return JSON.parse(localStorage.getItem(STORE + key)); } catch { return null; }
    },
    set(key, value) {
      try { localStorage.setItem(STORE + key, JSON.stringify(value)); } catch { /* ignore */ }
    },
    remove(key) {
      try { localStorage.removeItem(STORE + key); } catch { /* ignore */ }
    },
  });

  // --------------------------------------------------------------- requests
  /** An answer with a JSON error body (or a non-JSON failure from a proxy). */
  class ServerError extends Error {
    constructor(status, code, message, retryAfterMs) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfterMs = retryAfterMs;
    }
  }

  /** POSTs one JSON request as text/plain, a CORS simple request: no preflight. */
  async function post(path, body, timeoutMs) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    try {
      let response;
      try {
        response = await fetch(serverBase + path, {
          method: 'POST',
          mode: 'cors',
          credentials: 'omit',
          cache: 'no-store',
          headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
          body: JSON.stringify(body),
          signal: abort.signal,
        });
      } catch {
        throw new ServerError(0, 'network', 'The chat server cannot be reached.');
      }
      let answer = null;
      try { answer = await response.json(); } catch { /* not JSON */ }
      if (response.ok && answer) return answer;
      const error = (answer && answer.error) || {};
      throw new ServerError(
        response.status,
        error.code || 'http_' + response.status,
        error.message || 'The chat server answered ' + response.status + '.',
        error.retry_after_ms,
      );
    } finally {
      clearTimeout(timer);
    }
  }

  function isTransient(error) {
    return error.status === 0 || error.status === 429 || error.status >= 500 || !error.status;
  }

  /** Exponential backoff with jitter: half the cap plus a random other half. */
  function backoff(failures) {
    const cap = Math.min(30000, 500 * 2 ** Math.min(failures, 10));
    return cap / 2 + Math.random() * (cap / 2);
  }

  /** A send for the queue: its id (so a retry is not posted twice), its
   * text, and the promise its answer settles. */
  function sendJob(text) {
    const job = { id: 'm' + randomHex(9), text };
    job.done = new Promise((resolve, reject) => { job.resolve = resolve; job.reject = reject; });
    return job;
  }

  // ============================================================ connection
  /**
   * The connection to the chat server: the session (and who this browser is
   * on this site, shared by its tabs through localStorage), where this tab is
   * in its channel's stream, and, while this tab leads, the poll loop, the
   * send queue and the member list. A follower tab's connection makes no
   * requests: it only keeps its place with the batches the leader shares, so
   * that it resumes from there when it leads, neither skipping nor repeating
   * what it showed.
   *
   * `display` is the view (`replace`, `append`, `showChannel`, `showMe`,
   * `showConn`, `system`); `share` is the tab bus: `tell` the other tabs,
   * `polled` (a poll went through, so the lead holds) and `askLeader` (for
   * everything it shows).
   */
  function createConnection(display, share) {
    /** Who this browser is on this site: shared by its tabs through localStorage. */
    let identity = storage.get('|id') || {};
    /** What this tab shows: its channel, the cursor of the last answer it
     * applied and that answer's events, and who is here when known. */
    const shown = { channel: null, cursor: null, lastSeq: -1, events: [], members: null };
    const conn = { state: 'connecting', detail: '', retryAt: 0 };
    let leading = false;
    let generation = 0;
    let pollTimeoutMs = DEFAULT_POLL_TIMEOUT_MS;
    let starting = null;
    const queue = [];
    let queueRunning = false;
    const sleepers = new Set();

    /** A sleep that `wake` (the Retry button, the browser going online) ends early. */
    function sleep(ms) {
      return new Promise((resolve) => {
        const done = () => { clearTimeout(timer); sleepers.delete(done); resolve(); };
        const timer = setTimeout(done, ms);
        sleepers.add(done);
      });
    }
    function wake() {
      for (const done of [...sleepers]) done();
    }

    function saveIdentity(patch) {
      identity = Object.assign({}, identity, patch);
      storage.set('|id', identity);
    }

    function setConn(state, detail, retryAt) {
      conn.state = state;
      conn.detail = detail || '';
      conn.retryAt = retryAt || 0;
      display.showConn(conn);
      share.tell({ t: 'conn', conn });
    }

    function announceMe() {
      const me = { name: identity.name, color: identity.color };
      display.showMe(me);
      share.tell({ t: 'me', me });
    }

    // ---- the session
    /** The session token, starting a session (with the remembered name, color
     * and channel) when there is none. One start at a time for poll and sends. */
    function ensureSession() {
      if (identity.token) return Promise.resolve(identity.token);
      if (!starting) starting = startSession().finally(() => { starting = null; });
      return starting;
    }

    async function startSession() {
      const wish = {
        name: identity.name || config.name,
        color: identity.color,
        channel: shown.channel || identity.channel || config.channel,
      };
      for (;;) {
        const body = { v: 1, op: 'start' };
        for (const key of ['name', 'color', 'channel']) if (wish[key]) body[key] = wish[key];
        try {
          const answer = await post('broadcast', body, 15000);
          pollTimeoutMs = answer.poll_timeout_ms || DEFAULT_POLL_TIMEOUT_MS;
          saveIdentity({ token: answer.token, name: answer.name, color: answer.color, channel: answer.channel });
          announceMe();
          if (answer.notice) {
            display.system(answer.notice, 'notice');
            share.tell({ t: 'system', text: answer.notice, kind: 'notice' });
          }
          return answer.token;
        } catch (error) {
          // A wish the server refuses is dropped, the rest is kept.
          if ((error.code === 'invalid_name' || error.code === 'name_taken') && wish.name) delete wish.name;
          else if (error.code === 'invalid_color' && wish.color) delete wish.color;
          else if (error.code === 'invalid_channel' && wish.channel) delete wish.channel;
          else throw error;
        }
      }
    }

    function forgetToken(token) {
      if (token && identity.token === token) saveIdentity({ token: null });
    }

    /** POSTs a request of the session to /broadcast: starts a new session when
     * the server forgot this one, and tries again after transient failures for
     * as long as `wanted()` says the answer is still of use. */
    async function postForSession(bodyFor, timeoutMs, wanted) {
      let failures = 0;
      while (wanted()) {
        let token;
        try {
          token = await ensureSession();
          return await post('broadcast', bodyFor(token), timeoutMs);
        } catch (error) {
          if (error.code === 'unknown_session') {
            forgetToken(token);
            continue;
          }
          if (!isTransient(error)) throw error;
          failures += 1;
          await sleep(error.retryAfterMs || backoff(failures));
        }
      }
      return null;
    }

    // ---- the poll loop
    async function pollLoop(loop) {
      let failures = 0;
      let quick = true; // after a failure, ask for an answer at once to learn we are back
      while (leading && loop === generation) {
        let token;
        let answer;
        try {
          token = await ensureSession();
          const body = { v: 1, token };
          if (shown.channel && shown.cursor) {
            body.channel = shown.channel;
            body.cursor = shown.cursor;
          }
          if (quick) body.wait_ms = 0;
          answer = await post('poll', body, pollTimeoutMs * 1.2 + 10000);
        } catch (error) {
          if (loop !== generation) return;
          if (error.code === 'unknown_session') {
            // The server forgot the session: start a new one, keep the cursor.
            forgetToken(token);
            continue;
          }
          failures += 1;
          quick = true;
          if (error.status === 400) {
            // The server refuses our channel or cursor: start over from history.
            shown.cursor = null;
            shown.channel = null;
          }
          if (error.status === 403) {
            // This page's site is not on the server's allow-list: asking
            // again cannot change that, so the chat stops here for good.
            setConn('refused', error.message, 0);
            return;
          }
          const delay = error.retryAfterMs || backoff(failures);
          const state = failures >= 6 ? 'offline' : conn.everConnected ? 'reconnecting' : 'connecting';
          setConn(state, error.message, Date.now() + delay);
          await sleep(delay);
          continue;
        }
        if (loop !== generation) return;
        share.polled();
        failures = 0;
        if (answer.reconnect) {
          quick = true;
          const delay = 700 + Math.random() * 1300;
          setConn('reconnecting', 'The chat server is restarting.', Date.now() + delay);
          await sleep(delay);
          continue;
        }
        quick = false;
        conn.everConnected = true;
        if (conn.state !== 'connected') setConn('connected');
        const batch = {
          channel: answer.channel,
          cursor: answer.cursor,
          events: Array.isArray(answer.events) ? answer.events : [],
          reset: answer.reset,
        };
        if (batch.channel !== identity.channel) saveIdentity({ channel: batch.channel });
        share.tell({ t: 'batch', batch });
        apply(batch);
        if (batch.reset) refreshMembers();
      }
    }

    // ---- the send queue: sends run one at a time, in order, whichever tab typed them
    function enqueue(job) {
      queue.push(job);
      if (!queueRunning) runQueue();
    }
    async function runQueue() {
      queueRunning = true;
      while (queue.length) {
        const job = queue[0];
        try {
          job.resolve(await sendWithRetry(job));
        } catch (error) {
          job.reject(error);
        }
        queue.shift();
      }
      queueRunning = false;
    }
    function sendWithRetry(job) {
      return postForSession((token) => ({ v: 1, op: 'send', token, id: job.id, text: job.text }), 20000, () => true);
    }

    // ---- who is here
    /** Asks who is in the channel shown, with the `who` operation: outside the
     * send queue and the send rate limit, so it never delays what the person
     * types. A server older than `who` refuses it as a bad request; then the
     * `/who` command is sent through the queue, as such servers need. */
    function refreshMembers() {
      const channel = shown.channel;
      const stillShown = () => channel === shown.channel;
      const showAnswer = (answer) => {
        if (answer && answer.channel === shown.channel && stillShown()) {
          setMembers(answer.members || []);
          share.tell({ t: 'members', channel: shown.channel, members: shown.members });
        }
      };
      postForSession((token) => ({ v: 1, op: 'who', token }), 15000, stillShown).then(showAnswer, (error) => {
        if (error.code !== 'bad_request') return; // the count stays unknown
        const job = sendJob('/who');
        job.done.then((answer) => {
          const reply = answer && answer.reply;
          if (reply && reply.type === 'who') showAnswer(reply);
        }, () => { /* the count stays unknown */ });
        enqueue(job);
      });
    }

    function setMembers(members) {
      shown.members = members.slice().sort((a, b) => a.name.localeCompare(b.name));
      display.showChannel(shown.channel, shown.members);
    }

    // ---- what this tab shows
    /** Shows a poll answer: replaces the log on a reset, else appends the events
     * not shown yet (by seq), so an answer seen twice shows nothing twice. */
    function apply(batch) {
      const events = (batch.events || []).filter((e) => e && typeof e.seq === 'number');
      if (!batch.reset && shown.channel !== batch.channel) {
        // We missed the reset of this channel: ask the leader for all of it.
        if (!leading) share.askLeader();
        return;
      }
      if (batch.reset) {
        const previous = shown.channel;
        shown.channel = batch.channel;
        shown.events = events.slice(-MAX_LINES);
        shown.lastSeq = events.length ? events[events.length - 1].seq : -1;
        shown.cursor = batch.cursor;
        if (previous !== batch.channel) shown.members = null;
        display.replace(shown.events, batch.reset);
        display.showChannel(shown.channel, shown.members);
        for (const event of events) trackEvent(event, false);
        return;
      }
      const fresh = events.filter((e) => e.seq > shown.lastSeq);
      shown.cursor = batch.cursor;
      if (!fresh.length) return;
      shown.lastSeq = fresh[fresh.length - 1].seq;
      shown.events = shown.events.concat(fresh).slice(-MAX_LINES);
      for (const event of fresh) trackEvent(event, true);
      display.append(fresh);
    }

    /** Keeps who-is-here and our own name and color up to date from events. */
    function trackEvent(event, live) {
      if (event.type === 'nick' && event.from === identity.name && live) {
        if (leading) saveIdentity({ name: event.to });
        else identity = Object.assign({}, identity, { name: event.to });
        display.showMe({ name: event.to, color: identity.color });
      }
      if (event.type === 'color' && event.from === identity.name && live) {
        if (leading) saveIdentity({ color: event.color });
        else identity = Object.assign({}, identity, { color: event.color });
        display.showMe({ name: identity.name, color: event.color });
      }
      // An event of a type this widget does not know (a newer server's) says
      // nothing about who is here: its sender stays in the list.
      if (!live || !shown.members || !PRESENCE_EVENT_TYPES.includes(event.type)) return;
      const members = shown.members.filter((m) => m.name !== event.from);
      if (event.type === 'join' || event.type === 'color' || event.type === 'message' || event.type === 'me') {
        members.push({ name: event.from, color: event.color });
      } else if (event.type === 'nick') {
        members.push({ name: event.to, color: event.color });
      }
      if (event.type !== 'message' && event.type !== 'me' || members.length !== shown.members.length) {
        setMembers(members);
      }
    }

    return {
      /** This tab leads now: it polls and sends for every tab, starting with
       * the sends in `waiting`. */
      lead(waiting) {
        leading = true;
        generation += 1;
        identity = storage.get('|id') || identity;
        for (const job of waiting) enqueue(job);
        pollLoop(generation);
      },
      /** Another tab leads now: the poll loop ends, its sleeps too. */
      follow() {
        leading = false;
        generation += 1;
        wake();
      },
      enqueue,
      /** Ends every sleep of the leader's loops, to try again now. */
      wake,
      /** Who this browser chats as. */
      me: () => ({ name: identity.name, color: identity.color }),
      /** Whether this tab shows a channel yet. */
      hasPlace: () => Boolean(shown.channel),
      /** The leader changed who this browser is (a start, a nick): read it again. */
      reloadIdentity() {
        identity = storage.get('|id') || identity;
      },
      apply,
      /** Who is here in `channel`, as the leader learned it. */
      membersOf(channel, members) {
        if (channel === shown.channel) setMembers(members);
      },
      /** The leader's connection state, shown in a follower. */
      adoptConn(state) {
        Object.assign(conn, state);
        display.showConn(conn);
      },
      /** Forgets the place in the stream: the next batch shown replaces the view. */
      forgetPlace() {
        shown.channel = null;
        shown.cursor = null;
      },
      /** Everything a tab needs to show what this one shows. */
      snapshot() {
        return {
          channel: shown.channel, cursor: shown.cursor, events: shown.events, members: shown.members, conn,
          me: { name: identity.name, color: identity.color },
        };
      },
      /** Shows what the leader shows. */
      applySnapshot(snapshot) {
        if (snapshot.me) display.showMe(snapshot.me);
        if (snapshot.conn) {
          Object.assign(conn, snapshot.conn);
          display.showConn(conn);
        }
        if (!snapshot.channel) return;
        const sameChannel = shown.channel === snapshot.channel && shown.cursor;
        apply({
          channel: snapshot.channel,
          cursor: snapshot.cursor,
          events: snapshot.events || [],
          reset: sameChannel ? undefined : 'snapshot',
        });
        if (snapshot.members) setMembers(snapshot.members);
      },
      /** Shows the state this tab starts with. */
      showInitial() {
        display.showConn(conn);
        display.showChannel(null, null);
        display.showMe(identity);
      },
    };
  }

  // =============================================================== tab bus
  /**
   * The tabs of this browser on this site, over a BroadcastChannel: elects
   * the leader (Web Locks, or a localStorage lease where they are missing),
   * carries the messages of the other parts between tabs, and passes the
   * sends typed in a follower to the leader until it answers them.
   *
   * `roles.lead(waiting)` and `roles.follow()` are told when this tab starts
   * or stops leading (`waiting`: the sends of this tab that no leader has
   * answered); `roles.enqueue(job)` queues a send on the leader's connection;
   * `roles.received(message)` gets every message this bus does not handle
   * itself.
   */
  function createTabBus(roles) {
    const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel(STORE) : null;
    let isLeader = false;
    let renewLease = () => {};
    /** Sends this tab asked the leader to make, by request id. */
    const forwards = new Map();
    /** Requests of follower tabs, by tab and request id, so a repeated
     * request (after a leader change) is answered, not sent twice. */
    const handled = new Map();

    function tell(message) {
      if (channel) channel.postMessage(message);
    }

    // ---- leading
    function becomeLeader() {
      if (isLeader) return;
      isLeader = true;
      tell({ t: 'leader', tab: TAB });
      const waiting = [...forwards.values()];
      forwards.clear();
      roles.lead(waiting);
    }

    function stepDown() {
      if (!isLeader) return;
      isLeader = false;
      roles.follow();
      tell({ t: 'hello', tab: TAB });
    }

    function elect() {
      if (!channel) {
        becomeLeader();
        return;
      }
      if (navigator.locks && navigator.locks.request) {
        // The lock is held until the tab goes away; the next tab waiting gets it.
        navigator.locks.request(STORE + '|leader', () => new Promise(() => becomeLeader()));
        return;
      }
      electByLease();
    }

    /** Leader election where Web Locks are missing (pages on plain http): a
     * lease in localStorage that the leader renews and clears when it leaves. */
    function electByLease() {
      const LEASE_MS = 45000;
      const read = () => storage.get('|lease');
      let claiming = false;
      const tryClaim = async () => {
        if (isLeader || claiming) return;
        const lease = read();
        if (lease && lease.until > Date.now() && lease.tab !== TAB) return;
        claiming = true;
        storage.set('|lease', { tab: TAB, until: Date.now() + LEASE_MS });
        await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 200));
        claiming = false;
        const now = read();
        if (now && now.tab === TAB) becomeLeader();
      };
      renewLease = () => {
        if (!isLeader) return;
        const lease = read();
        if (lease && lease.tab !== TAB && lease.until > Date.now() && lease.tab < TAB) {
          stepDown(); // two leaders after a race: the smaller tab id keeps it
          return;
        }
        storage.set('|lease', { tab: TAB, until: Date.now() + LEASE_MS });
      };
      setInterval(() => (isLeader ? renewLease() : tryClaim()), 3000);
      window.addEventListener('storage', (event) => {
        if (event.key === STORE + '|lease' && !event.newValue) tryClaim();
      });
      window.addEventListener('pagehide', () => {
        const lease = read();
        if (isLeader && lease && lease.tab === TAB) storage.remove('|lease');
      });
      tryClaim();
    }

    // ---- sends typed in any tab
    function send(text) {
      const job = sendJob(text);
      if (isLeader) {
        roles.enqueue(job);
      } else {
        const req = randomHex(6);
        job.accepted = false;
        forwards.set(req, job);
        forward(req);
      }
      return { id: job.id, done: job.done };
    }

    function forward(req) {
      const job = forwards.get(req);
      if (!job) return;
      job.postedAt = Date.now();
      tell({ t: 'send', tab: TAB, req, id: job.id, text: job.text });
    }

    // A request the leader did not acknowledge is posted again (there may be
    // no leader for a moment while tabs hand over).
    setInterval(() => {
      for (const [req, job] of forwards) {
        if (!job.accepted && Date.now() - job.postedAt > 1500) forward(req);
      }
    }, 1000);

    function handleForwardedSend(message) {
      const key = message.tab + ':' + message.req;
      const known = handled.get(key);
      if (known) {
        tell(known.result || { t: 'accepted', to: message.tab, req: message.req });
        return;
      }
      const entry = { result: null };
      handled.set(key, entry);
      if (handled.size > 500) handled.delete(handled.keys().next().value);
      tell({ t: 'accepted', to: message.tab, req: message.req });
      roles.enqueue({
        id: message.id,
        text: message.text,
        resolve(answer) {
          entry.result = { t: 'result', to: message.tab, req: message.req, answer };
          tell(entry.result);
        },
        reject(error) {
          entry.result = {
            t: 'result', to: message.tab, req: message.req,
            error: { status: error.status, code: error.code, message: error.message },
          };
          tell(entry.result);
        },
      });
    }

    function settleForward(message) {
      const job = forwards.get(message.req);
      forwards.delete(message.req);
      if (message.error) {
        const e = message.error;
        job.reject(new ServerError(e.status, e.code, e.message));
      } else {
        job.resolve(message.answer);
      }
    }

    function receive(message) {
      switch (message.t) {
        case 'leader':
          // A new leader: everything not yet answered is asked again.
          for (const [req, job] of forwards) {
            job.accepted = false;
            forward(req);
          }
          roles.received(message);
          break;
        case 'send':
          if (isLeader) handleForwardedSend(message);
          break;
        case 'accepted':
          if (message.to === TAB && forwards.has(message.req)) forwards.get(message.req).accepted = true;
          break;
        case 'result':
          if (message.to === TAB && forwards.has(message.req)) settleForward(message);
          break;
        default:
          roles.received(message);
      }
    }

    if (channel) {
      channel.onmessage = (event) => {
        const message = event.data;
        if (!message || typeof message !== 'object') return;
        receive(message);
      };
    }

    return {
      /** Says hello to the other tabs and takes part in the election. */
      start() {
        tell({ t: 'hello', tab: TAB });
        elect();
      },
      isLeader: () => isLeader,
      tell,
      send,
      /** The leader's poll went through: its lease (if it has one) goes on. */
      renewLease: () => renewLease(),
      /** Asks the leader for everything it shows. */
      askLeader: () => tell({ t: 'hello', tab: TAB }),
    };
  }

  // ================================================================== view
  // Pure helpers of the view: they build nodes and keep no state.
  const SVG = 'http://www.w3.org/2000/svg';
  function svgIcon(pathData) {
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    const path = document.createElementNS(SVG, 'path');
    path.setAttribute('d', pathData);
    svg.append(path);
    return svg;
  }
  const ICON_CHAT = 'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z';
  const ICON_MINUS = 'M5 11h14v2H5z';
  const ICON_SEND = 'M3 20l18-8L3 4v6l12 2-12 2z';

  /** Builds an element; text goes in with textContent only, never as HTML. */
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'text') node.textContent = value;
      else if (key === 'class') node.className = value;
      else node.setAttribute(key, value === true ? '' : value);
    }
    node.append(...children);
    return node;
  }

  function safeColor(color) {
    return typeof color === 'string' && /^[0-9a-fA-F]{6}$/.test(color) ? '#' + color : '#dddddd';
  }

  const LINK = /\bhttps?:\/\/[^\s<>"'`]+/gi;
  /** Appends text, making http(s) links clickable; everything else is text. */
  function appendText(parent, text) {
    let last = 0;
    for (const match of String(text).matchAll(LINK)) {
      const url = match[0].replace(/[.,;:!?'")\]}]+$/, '');
      let href = null;
      try {
        const parsed = new URL(url);
        if (parsed.protocol === 'http:' || parsed.protocol === 'https:') href = parsed.href;
      } catch { /* not a link */ }
      parent.append(String(text).slice(last, match.index));
      parent.append(href
        ? el('a', { href, target: '_blank', rel: 'noopener noreferrer nofollow', text: url })
        : url);
      last = match.index + url.length;
    }
    parent.append(String(text).slice(last));
  }

  function timeOf(ts) {
    const date = new Date(typeof ts === 'number' ? ts : Date.now());
    const node = el('time', {
      datetime: date.toISOString(),
      title: date.toLocaleString(),
      text: date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }),
    });
    return node;
  }

  function nameOf(name, color) {
    const node = el('span', { class: 'name', text: name || '?' });
    node.style.color = safeColor(color);
    return node;
  }

  const LEAVE_REASONS = { exit: 'left for another channel', quit: 'left', timeout: 'timed out' };

  function renderEvent(event) {
    const line = el('li', { class: 'line ' + event.type, 'data-seq': String(event.seq) });
    if (event.id) line.setAttribute('data-id', event.id);
    line.append(timeOf(event.ts), ' ');
    const name = nameOf(event.from, event.color);
    switch (event.type) {
      case 'message': {
        const text = el('span', { class: 'text', dir: 'auto' });
        appendText(text, event.text);
        line.append(name, el('span', { class: 'colon', text: ': ' }), text);
        break;
      }
      case 'me': {
        const text = el('span', { class: 'text', dir: 'auto' });
        appendText(text, event.text);
        line.append('* ', name, ' ', text);
        break;
      }
      case 'join':
        line.append('→ ', name, ' joined');
        break;
      case 'leave':
        line.append('← ', name, ' ' + (LEAVE_REASONS[event.reason] || 'left'));
        break;
      case 'nick':
        line.append(name, ' is now ', nameOf(event.to, event.color));
        break;
      case 'color':
        line.append(name, ' changed color');
        break;
      default:
        return null; // unknown event types are ignored
    }
    return line;
  }

  function renderAll(events, into) {
    for (const event of events) {
      const line = renderEvent(event);
      if (line) into.append(line);
    }
  }

  const RESET_NOTES = {
    gap: 'Some messages were missed while away; showing the latest.',
    epoch: 'The chat history was reset on the server.',
  };

  const STATE_TEXT = {
    connecting: 'Connecting…',
    reconnecting: 'Reconnecting…',
    offline: 'The chat server cannot be reached.',
    refused: 'The chat is not available on this site.',
  };

  /** The elements of the chat, unattached: the launcher, the header with
   * the member list, the status line, the log and the input line. */
  function buildParts() {
    const parts = {};
    parts.launcherCount = el('span', { class: 'count', hidden: true });
    parts.launcher = el('button', { class: 'launcher', type: 'button', 'aria-expanded': 'false', 'aria-label': 'Open chat' },
      svgIcon(ICON_CHAT), el('span', { class: 'label', text: config.title }), parts.launcherCount);

    const dot = el('span', { class: 'dot', 'aria-hidden': 'true' });
    parts.title = el('h2', { class: 'title', id: 'talk-title' });
    parts.whoButton = el('button', { class: 'who', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'talk-members', title: 'Who is here' });
    parts.minimize = el('button', { class: 'minimize', type: 'button', 'aria-label': 'Minimize chat', title: 'Minimize (Esc)' }, svgIcon(ICON_MINUS));
    const header = el('header', { class: 'bar' }, dot, parts.title, parts.whoButton, PAGE_MODE ? '' : parts.minimize);
    parts.members = el('ul', { class: 'members', id: 'talk-members', hidden: true, 'aria-label': 'People here' });

    parts.statusText = el('span', { class: 'status-text' });
    parts.retry = el('button', { class: 'retry', type: 'button', text: 'Retry now', hidden: true });
    parts.status = el('div', { class: 'status', role: 'status' }, parts.statusText, parts.retry);

    parts.lines = el('ol', { class: 'lines', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': 'Messages' });
    parts.pending = el('ol', { class: 'pending', 'aria-label': 'Sending' });
    parts.scroller = el('div', { class: 'scroll', tabindex: '0', 'aria-label': 'Chat messages' }, parts.lines, parts.pending);
    parts.jump = el('button', { class: 'jump', type: 'button', hidden: true });

    parts.input = el('input', {
      class: 'input', type: 'text', maxlength: '1000', autocomplete: 'off', spellcheck: 'true',
      enterkeyhint: 'send', 'aria-label': 'Message, or a command such as /help', placeholder: 'Say something, or /help',
    });
    parts.sendButton = el('button', { class: 'send', type: 'submit', 'aria-label': 'Send' }, svgIcon(ICON_SEND));
    parts.form = el('form', { class: 'form' }, parts.input, parts.sendButton);

    parts.box = el('section', { class: 'box', 'aria-labelledby': 'talk-title' },
      header, parts.members, parts.status, parts.scroller, parts.jump, parts.form);
    parts.wrap = el('div', { class: 'talk', hidden: true, 'data-state': 'connecting' }, parts.launcher, parts.box);
    return parts;
  }

  /** The stylesheet the page links (so a self-hosted copy is used), else the
   * one beside this script. Its rules all start with :host, so the page's
   * own copy of it styles nothing in the page. */
  function stylesheetHref() {
    const pageLink = [...document.querySelectorAll('link[rel~="stylesheet"]')]
      .find((link) => /(^|\/)talk\.css(\?|#|$)/.test(new URL(link.href, location.href).pathname + new URL(link.href, location.href).search));
    return data.css || (pageLink && pageLink.href) || new URL('talk.css', scriptDir).href;
  }

  /** The colors the page set with data attributes, as CSS variables. */
  function applyTheme(wrap) {
    for (const [attribute, variable] of [['background', '--talk-bg'], ['foreground', '--talk-fg'], ['accent', '--talk-accent']]) {
      const value = data[attribute];
      if (value && CSS.supports('color', value)) wrap.style.setProperty(variable, value);
    }
  }

  /** Puts the chat in the page: in its own shadow root, shown once its
   * stylesheet is there (`onShown`), so the page never flashes an
   * unstyled chat. */
  function mount(parts, onShown) {
    const host = document.createElement('talk-chat');
    host.setAttribute('mode', PAGE_MODE ? 'page' : 'widget');
    host.setAttribute('position', config.position);
    const root = host.attachShadow({ mode: 'open' });
    const sheet = el('link', { rel: 'stylesheet', href: stylesheetHref() });
    applyTheme(parts.wrap);
    root.append(sheet, parts.wrap);

    let shown = false;
    const show = () => { if (!shown) { shown = true; parts.wrap.hidden = false; onShown(); } };
    sheet.addEventListener('load', show);
    sheet.addEventListener('error', show);
    setTimeout(show, 4000);

    // The chat hangs off <html>, after <body>: a transform or filter that a
    // page puts on its body would otherwise pin the fixed box to the body.
    const attach = () => document.documentElement.append(host);
    if (document.body) attach();
    else document.addEventListener('DOMContentLoaded', attach);
    return host;
  }

  /** Scrolling: the log stays at the bottom unless the reader scrolled up;
   * then a button counts the lines added below. */
  function followBottom(parts) {
    const { scroller, jump, input } = parts;
    let newBelow = 0;
    const atBottom = () => scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48;
    function stickToBottom() {
      scroller.scrollTop = scroller.scrollHeight;
      newBelow = 0;
      jump.hidden = true;
    }
    scroller.addEventListener('scroll', () => { if (atBottom()) { newBelow = 0; jump.hidden = true; } });
    jump.addEventListener('click', () => { stickToBottom(); input.focus(); });
    function afterAdding(wasAtBottom, added) {
      if (wasAtBottom) stickToBottom();
      else if (added) {
        newBelow += added;
        jump.hidden = false;
        jump.textContent = newBelow + ' new ↓';
      }
    }
    return { atBottom, stickToBottom, afterAdding };
  }

  /** Open or collapsed to the launcher, remembered across pages; the
   * launcher (and, on the full page, the title) counts unread messages. */
  function openAndUnread(parts, host, scrolling, remembered) {
    const { wrap, launcher, launcherCount, minimize, box, input } = parts;
    const narrow = window.matchMedia('(max-width: 520px)').matches;
    let open = PAGE_MODE || (!narrow && (typeof remembered.open === 'boolean' ? remembered.open : config.open));
    let unread = 0;
    const baseTitle = document.title;
    function setOpen(value, focus) {
      open = PAGE_MODE || value;
      wrap.classList.toggle('open', open);
      host.toggleAttribute('open', open);
      launcher.setAttribute('aria-expanded', String(open));
      if (!PAGE_MODE) storage.set('|ui', Object.assign(storage.get('|ui') || {}, { open }));
      if (open) {
        unread = 0;
        showUnread();
        scrolling.stickToBottom();
        if (focus) input.focus();
      } else if (focus) {
        launcher.focus();
      }
    }
    function showUnread() {
      launcherCount.hidden = unread === 0;
      launcherCount.textContent = unread > 99 ? '99+' : String(unread);
      launcher.setAttribute('aria-label', unread ? 'Open chat, ' + unread + ' unread' : 'Open chat');
      if (PAGE_MODE) document.title = (unread ? '(' + unread + ') ' : '') + baseTitle;
    }
    launcher.addEventListener('click', () => setOpen(true, true));
    minimize.addEventListener('click', () => setOpen(false, true));
    box.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && !PAGE_MODE) {
        event.preventDefault();
        setOpen(false, true);
      }
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && open) {
        unread = 0;
        showUnread();
      }
    });
    setOpen(open, false);
    if (PAGE_MODE) input.focus();
    return {
      /** Counts messages from others that arrive while the chat is not seen. */
      noteArrived(count) {
        if (count && (!open || document.hidden)) {
          unread += count;
          showUnread();
        }
      },
    };
  }

  /** The input line: Enter submits (to `submit`), ↑ and ↓ go through what
   * was typed before, remembered across pages. */
  function typingHistory(parts, remembered, submit) {
    const { form, input } = parts;
    const history = Array.isArray(remembered.history) ? remembered.history.slice(-50) : [];
    let historyIndex = history.length;
    let draft = '';
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      input.value = '';
      history.push(text);
      if (history.length > 50) history.shift();
      historyIndex = history.length;
      storage.set('|ui', Object.assign(storage.get('|ui') || {}, { history }));
      submit(text);
    });
    input.addEventListener('keydown', (event) => {
      if (event.key === 'ArrowUp' && historyIndex > 0) {
        if (historyIndex === history.length) draft = input.value;
        historyIndex -= 1;
        input.value = history[historyIndex];
        event.preventDefault();
      } else if (event.key === 'ArrowDown' && historyIndex < history.length) {
        historyIndex += 1;
        input.value = historyIndex === history.length ? draft : history[historyIndex];
        event.preventDefault();
      }
    });
  }

  /** Local lines: replies to commands, notices and errors, for this person
   * only; each is shown at once, scrolled into view. */
  function systemLines(parts, scrolling) {
    const { lines } = parts;
    function node(text, kind) {
      const line = el('li', { class: 'line system' + (kind ? ' ' + kind : '') });
      if (kind !== 'help') line.append(timeOf(Date.now()), ' ');
      line.append(text);
      return line;
    }
    function add(line) {
      // A system line answers what this person just did: show it.
      lines.append(line);
      trimLog(lines);
      scrolling.stickToBottom();
    }
    function say(text, kind) {
      add(node(text, kind));
    }
    function showReply(reply) {
      switch (reply.type) {
        case 'joined':
          say('You are in #' + reply.channel + ' now.');
          break;
        case 'list': {
          const channels = reply.channels || [];
          say(channels.length
            ? 'Channels: ' + channels.map((c) => '#' + c.name + ' (' + c.members + ')').join(', ')
            : 'No channels have people in them.');
          break;
        }
        case 'who': {
          const line = node('');
          line.append('In #' + reply.channel + ': ');
          (reply.members || []).forEach((member, index) => {
            if (index) line.append(', ');
            line.append(nameOf(member.name, member.color));
          });
          add(line);
          break;
        }
        case 'nick':
          say('You are now called ' + reply.name + '.');
          break;
        case 'color': {
          const line = node('Your color is now ');
          line.append(nameOf('#' + reply.color, reply.color), '.');
          add(line);
          break;
        }
        case 'help':
          say('Commands:');
          for (const command of reply.commands || []) say(command.usage + ' — ' + command.about, 'help');
          say('Keys: ↑ and ↓ go through what you typed' + (PAGE_MODE ? '.' : ', Esc closes the chat.'), 'help');
          break;
        default:
          say('Done.');
      }
    }
    return { say, showReply };
  }

  function trimLog(lines) {
    while (lines.childElementCount > MAX_LINES) lines.firstElementChild.remove();
  }

  /** A message being sent: shown below the log as "sending…" until its
   * event comes back in a poll. */
  function pendingLine(id, text, me) {
    const line = el('li', { class: 'line message mine sending', 'data-id': id },
      nameOf(me.name || 'you', me.color), el('span', { class: 'colon', text: ': ' }));
    const body = el('span', { class: 'text', dir: 'auto' });
    appendText(body, text);
    line.append(body, el('span', { class: 'note', text: ' sending…' }));
    return line;
  }

  /**
   * The view: builds the chat in the page and shows what it is given. It
   * knows nothing of requests or tabs: what the person does goes to
   * `actions.send(text)` (which answers `{ id, done }`), `actions.retry()`,
   * and `actions.me()` says who the person is.
   */
  function createView(actions) {
    const parts = buildParts();
    const remembered = storage.get('|ui') || {};
    const scrolling = followBottom(parts);
    const host = mount(parts, scrolling.stickToBottom);
    const opening = openAndUnread(parts, host, scrolling, remembered);
    const system = systemLines(parts, scrolling);
    const { lines, pending, whoButton, members } = parts;
    let countdown = null;

    whoButton.addEventListener('click', () => {
      const expanded = members.hidden;
      members.hidden = !expanded;
      whoButton.setAttribute('aria-expanded', String(expanded));
    });
    parts.retry.addEventListener('click', () => actions.retry());

    typingHistory(parts, remembered, (text) => {
      const isCommand = text.startsWith('/');
      const { id, done } = actions.send(text);
      let line = null;
      if (!isCommand) {
        line = pendingLine(id, text, actions.me());
        pending.append(line);
        scrolling.stickToBottom();
      }
      done.then((answer) => {
        if (line) {
          // Sent; the line goes when the message comes back in a poll.
          line.classList.remove('sending');
          const note = line.querySelector('.note');
          if (note) note.textContent = '';
          if (lines.querySelector('[data-id="' + CSS.escape(id) + '"]')) line.remove();
        }
        if (answer && answer.reply) system.showReply(answer.reply);
      }, (error) => {
        if (line) line.remove();
        system.say(error.message || 'That did not work.', 'error');
      });
    });

    function dropPendingFor(events) {
      for (const event of events) {
        if (!event.id) continue;
        const line = pending.querySelector('[data-id="' + CSS.escape(event.id) + '"]');
        if (line) line.remove();
      }
    }

    return {
      system: system.say,
      replace(events, reason) {
        // Local lines after the last event (replies to the latest commands,
        // such as "You are in #games now.") stay, below the new history.
        const trailing = [];
        for (let line = lines.lastElementChild; line && line.classList.contains('system'); line = line.previousElementSibling) {
          trailing.unshift(line);
        }
        const fragment = document.createDocumentFragment();
        renderAll(events, fragment);
        fragment.append(...trailing);
        lines.replaceChildren(fragment);
        if (RESET_NOTES[reason]) system.say(RESET_NOTES[reason], 'notice');
        dropPendingFor(events);
        // Sent lines whose message will not come back in this channel go too.
        for (const line of pending.querySelectorAll('.line:not(.sending)')) line.remove();
        scrolling.stickToBottom();
      },
      append(events) {
        const wasAtBottom = scrolling.atBottom();
        const fragment = document.createDocumentFragment();
        renderAll(events, fragment);
        lines.append(fragment);
        trimLog(lines);
        dropPendingFor(events);
        const me = actions.me();
        const others = events.filter((e) => (e.type === 'message' || e.type === 'me') && e.from !== me.name).length;
        opening.noteArrived(others);
        scrolling.afterAdding(wasAtBottom, others);
      },
      showChannel(channel, people) {
        parts.title.textContent = (config.title !== 'talk' ? config.title + ' · ' : '') + '#' + (channel || '…');
        if (people) {
          whoButton.textContent = people.length + ' here';
          whoButton.setAttribute('aria-label', people.length + ' people here; show who');
          members.replaceChildren(...people.map((p) => el('li', {}, nameOf(p.name, p.color))));
        } else {
          whoButton.textContent = '';
          whoButton.setAttribute('aria-label', 'Who is here');
        }
      },
      showMe(me) {
        parts.input.placeholder = me && me.name ? 'Message as ' + me.name + ', or /help' : 'Say something, or /help';
      },
      showConn(state) {
        const { wrap, status, retry, statusText, input, sendButton } = parts;
        wrap.setAttribute('data-state', state.state);
        clearInterval(countdown);
        const connected = state.state === 'connected';
        const refused = state.state === 'refused';
        status.hidden = connected;
        retry.hidden = connected || refused || state.state === 'connecting' && !state.retryAt;
        // Nothing typed could be sent: say so where one would type.
        input.disabled = refused;
        sendButton.disabled = refused;
        if (refused) input.placeholder = 'Chat is not available on this site';
        const render = () => {
          const seconds = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
          statusText.textContent = STATE_TEXT[state.state] || state.state;
          if (!refused && state.retryAt && seconds > 0) statusText.textContent += ' Next try in ' + seconds + ' s.';
        };
        render();
        if (!connected && state.retryAt) countdown = setInterval(render, 1000);
      },
    };
  }

  // ================================================================ wiring
  // The three parts, and the messages between tabs that concern more than
  // the bus itself. Each part is made before any event can reach it.
  const view = createView({
    send: (text) => tabs.send(text),
    retry() {
      if (tabs.isLeader()) connection.wake();
      else tabs.tell({ t: 'wake' });
    },
    me: () => connection.me(),
  });
  const connection = createConnection(view, {
    tell: (message) => tabs.tell(message),
    polled: () => tabs.renewLease(),
    askLeader: () => tabs.askLeader(),
  });
  const tabs = createTabBus({
    lead: (waiting) => connection.lead(waiting),
    follow: () => connection.follow(),
    enqueue: (job) => connection.enqueue(job),
    received(message) {
      const leader = tabs.isLeader();
      switch (message.t) {
        case 'batch':
          if (!leader) connection.apply(message.batch);
          break;
        case 'conn':
          if (!leader) connection.adoptConn(message.conn);
          break;
        case 'me':
          if (!leader) {
            connection.reloadIdentity();
            view.showMe(message.me);
          }
          break;
        case 'members':
          connection.membersOf(message.channel, message.members);
          break;
        case 'system':
          view.system(message.text, message.kind);
          break;
        case 'hello':
          if (leader) tabs.tell(Object.assign({ t: 'snapshot', to: message.tab }, connection.snapshot()));
          break;
        case 'snapshot':
          if (message.to === TAB && !leader) connection.applySnapshot(message);
          break;
        case 'leader':
          if (!connection.hasPlace()) tabs.askLeader();
          break;
        case 'wake':
          if (leader) connection.wake();
          break;
        default:
          break;
      }
    },
  });

  window.addEventListener('online', () => { if (tabs.isLeader()) connection.wake(); });
  // A follower that was frozen or kept in the back/forward cache may have
  // missed answers: it asks the leader for everything again.
  const catchUp = () => {
    if (tabs.isLeader()) {
      connection.wake();
    } else {
      connection.forgetPlace();
      tabs.askLeader();
    }
  };
  window.addEventListener('pageshow', (event) => { if (event.persisted) catchUp(); });
  document.addEventListener('resume', catchUp);

  connection.showInitial();
  tabs.start();
})();
