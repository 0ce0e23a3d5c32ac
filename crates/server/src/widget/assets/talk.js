/*! talk.js: the talk chat widget and the full-page chat. Plain JavaScript,
 * no framework, no build step. Embed with
 *   <link rel="stylesheet" href="https://chat.example/talk.css">
 *   <script src="https://chat.example/talk.js" defer></script>
 * The chat server is the folder this script was loaded from (or data-server).
 *
 * One tab per browser and site holds the long-poll (the "leader", elected with
 * Web Locks, or a localStorage lease where Web Locks are missing); it shares
 * every poll answer with the other tabs over a BroadcastChannel and sends for
 * them, so ten tabs still use one connection for polling. */
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
  const config = {
    channel: cleanChannel(data.channel),
    name: data.name || undefined,
    title: data.title || 'talk',
    position: data.position === 'bottom-left' ? 'bottom-left' : 'bottom-right',
    open: data.open !== 'false',
  };
  const STORE = 'talk:' + serverBase;
  const TAB = randomHex(8);
  const MAX_LINES = 400;
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
  const storage = {
    get(key) {
      try { return JSON.parse(localStorage.getItem(STORE + key)); } catch { return null; }
    },
    set(key, value) {
      try { localStorage.setItem(STORE + key, JSON.stringify(value)); } catch { /* ignore */ }
    },
    remove(key) {
      try { localStorage.removeItem(STORE + key); } catch { /* ignore */ }
    },
  };

  // --------------------------------------------------------------- network
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

  const sleepers = new Set();
  /** A sleep that `wakeAll` (the Retry button, the browser going online) ends early. */
  function sleep(ms) {
    return new Promise((resolve) => {
      const done = () => { clearTimeout(timer); sleepers.delete(done); resolve(); };
      const timer = setTimeout(done, ms);
      sleepers.add(done);
    });
  }
  function wakeAll() {
    for (const done of [...sleepers]) done();
  }

  // ----------------------------------------------------------------- state
  /** Who this browser is on this site: shared by its tabs through localStorage. */
  let identity = storage.get('|id') || {};
  /** What this tab shows: its channel, the cursor of the last answer it applied
   * and that answer's events. A tab that becomes leader resumes from here, so
   * it neither skips nor repeats what it showed. */
  const view = { channel: null, cursor: null, lastSeq: -1, events: [], members: null };
  const conn = { state: 'connecting', detail: '', retryAt: 0 };
  let isLeader = false;
  let leaderGeneration = 0;
  let pollTimeoutMs = DEFAULT_POLL_TIMEOUT_MS;

  const bus = typeof BroadcastChannel === 'function' ? new BroadcastChannel(STORE) : null;
  function tell(message) {
    if (bus) bus.postMessage(message);
  }

  function saveIdentity(patch) {
    identity = Object.assign({}, identity, patch);
    storage.set('|id', identity);
  }

  // --------------------------------------------------------------- leader
  function setConn(state, detail, retryAt) {
    conn.state = state;
    conn.detail = detail || '';
    conn.retryAt = retryAt || 0;
    ui.showConn(conn);
    tell({ t: 'conn', conn });
  }

  let starting = null;
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
      channel: view.channel || identity.channel || config.channel,
    };
    for (;;) {
      const body = { v: 1, op: 'start' };
      for (const key of ['name', 'color', 'channel']) if (wish[key]) body[key] = wish[key];
      try {
        const answer = await post('broadcast', body, 15000);
        pollTimeoutMs = answer.poll_timeout_ms || DEFAULT_POLL_TIMEOUT_MS;
        saveIdentity({ token: answer.token, name: answer.name, color: answer.color, channel: answer.channel });
        announceMe();
        if (answer.notice) systemLine(answer.notice, 'notice', true);
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

  function announceMe() {
    const me = { name: identity.name, color: identity.color };
    ui.showMe(me);
    tell({ t: 'me', me });
  }

  async function pollLoop(generation) {
    let failures = 0;
    let quick = true; // after a failure, ask for an answer at once to learn we are back
    while (isLeader && generation === leaderGeneration) {
      let token;
      let answer;
      try {
        token = await ensureSession();
        const body = { v: 1, token };
        if (view.channel && view.cursor) {
          body.channel = view.channel;
          body.cursor = view.cursor;
        }
        if (quick) body.wait_ms = 0;
        answer = await post('poll', body, pollTimeoutMs * 1.2 + 10000);
      } catch (error) {
        if (generation !== leaderGeneration) return;
        if (error.code === 'unknown_session') {
          // The server forgot the session: start a new one, keep the cursor.
          forgetToken(token);
          continue;
        }
        failures += 1;
        quick = true;
        if (error.status === 400) {
          // The server refuses our channel or cursor: start over from history.
          view.cursor = null;
          view.channel = null;
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
      if (generation !== leaderGeneration) return;
      renewLease();
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
      tell({ t: 'batch', batch });
      applyBatch(batch);
      if (batch.reset) refreshMembers();
    }
  }

  // Sends run one at a time, in order, whichever tab typed them.
  const queue = [];
  let queueRunning = false;
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

  /** Asks who is in the channel shown, with the `who` operation: outside the
   * send queue and the send rate limit, so it never delays what the person
   * types. A server older than `who` refuses it as a bad request; then the
   * `/who` command is sent through the queue, as such servers need. */
  function refreshMembers() {
    const channel = view.channel;
    const stillShown = () => channel === view.channel;
    const show = (answer) => {
      if (answer && answer.channel === view.channel && stillShown()) {
        setMembers(answer.members || []);
        tell({ t: 'members', channel: view.channel, members: view.members });
      }
    };
    postForSession((token) => ({ v: 1, op: 'who', token }), 15000, stillShown).then(show, (error) => {
      if (error.code !== 'bad_request') return; // the count stays unknown
      enqueue({
        id: 'w' + randomHex(8),
        text: '/who',
        resolve(answer) {
          const reply = answer && answer.reply;
          if (reply && reply.type === 'who') show(reply);
        },
        reject() { /* the count stays unknown */ },
      });
    });
  }

  // Requests of follower tabs, by tab and request id, so a repeated request
  // (after a leader change) is answered, not sent twice.
  const handled = new Map();
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
    enqueue({
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

  function becomeLeader() {
    if (isLeader) return;
    isLeader = true;
    leaderGeneration += 1;
    identity = storage.get('|id') || identity;
    tell({ t: 'leader', tab: TAB });
    for (const [req, job] of forwards) {
      forwards.delete(req);
      enqueue(job);
    }
    pollLoop(leaderGeneration);
  }

  function stepDown() {
    if (!isLeader) return;
    isLeader = false;
    leaderGeneration += 1;
    wakeAll();
    tell({ t: 'hello', tab: TAB });
  }

  // -------------------------------------------------------------- election
  const LEASE_MS = 45000;
  let renewLease = () => {};

  function elect() {
    if (!bus) {
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

  // ------------------------------------------------------------- followers
  /** Sends this tab asked the leader to make, by request id. */
  const forwards = new Map();

  function send(text) {
    const job = { id: 'm' + randomHex(9), text };
    const done = new Promise((resolve, reject) => { job.resolve = resolve; job.reject = reject; });
    if (isLeader) {
      enqueue(job);
    } else {
      const req = randomHex(6);
      job.accepted = false;
      forwards.set(req, job);
      forward(req);
    }
    return { id: job.id, done };
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

  if (bus) {
    bus.onmessage = (event) => {
      const message = event.data;
      if (!message || typeof message !== 'object') return;
      switch (message.t) {
        case 'batch':
          if (!isLeader) applyBatch(message.batch);
          break;
        case 'conn':
          if (!isLeader) {
            Object.assign(conn, message.conn);
            ui.showConn(conn);
          }
          break;
        case 'me':
          if (!isLeader) {
            identity = storage.get('|id') || identity;
            ui.showMe(message.me);
          }
          break;
        case 'members':
          if (message.channel === view.channel) setMembers(message.members);
          break;
        case 'system':
          ui.system(message.text, message.kind);
          break;
        case 'hello':
          if (isLeader) {
            tell({
              t: 'snapshot', to: message.tab, channel: view.channel, cursor: view.cursor,
              events: view.events, members: view.members, conn,
              me: { name: identity.name, color: identity.color },
            });
          }
          break;
        case 'snapshot':
          if (message.to === TAB && !isLeader) applySnapshot(message);
          break;
        case 'leader':
          // A new leader: everything not yet answered is asked again.
          for (const [req, job] of forwards) {
            job.accepted = false;
            forward(req);
          }
          if (!view.channel) tell({ t: 'hello', tab: TAB });
          break;
        case 'send':
          if (isLeader) handleForwardedSend(message);
          break;
        case 'accepted':
          if (message.to === TAB && forwards.has(message.req)) forwards.get(message.req).accepted = true;
          break;
        case 'result':
          if (message.to === TAB && forwards.has(message.req)) {
            const job = forwards.get(message.req);
            forwards.delete(message.req);
            if (message.error) {
              const e = message.error;
              job.reject(new ServerError(e.status, e.code, e.message));
            } else {
              job.resolve(message.answer);
            }
          }
          break;
        default:
          break;
      }
    };
  }

  function applySnapshot(snapshot) {
    if (snapshot.me) ui.showMe(snapshot.me);
    if (snapshot.conn) {
      Object.assign(conn, snapshot.conn);
      ui.showConn(conn);
    }
    if (!snapshot.channel) return;
    const sameChannel = view.channel === snapshot.channel && view.cursor;
    applyBatch({
      channel: snapshot.channel,
      cursor: snapshot.cursor,
      events: snapshot.events || [],
      reset: sameChannel ? undefined : 'snapshot',
    });
    if (snapshot.members) setMembers(snapshot.members);
  }

  // --------------------------------------------------------------- display
  /** Shows a poll answer: replaces the log on a reset, else appends the events
   * not shown yet (by seq), so an answer seen twice shows nothing twice. */
  function applyBatch(batch) {
    const events = (batch.events || []).filter((e) => e && typeof e.seq === 'number');
    if (!batch.reset && view.channel !== batch.channel) {
      // We missed the reset of this channel: ask the leader for all of it.
      if (!isLeader) tell({ t: 'hello', tab: TAB });
      return;
    }
    if (batch.reset) {
      const previous = view.channel;
      view.channel = batch.channel;
      view.events = events.slice(-MAX_LINES);
      view.lastSeq = events.length ? events[events.length - 1].seq : -1;
      view.cursor = batch.cursor;
      if (previous !== batch.channel) view.members = null;
      ui.replace(view.events, batch.reset);
      ui.showChannel(view.channel, view.members);
      for (const event of events) trackEvent(event, false);
      return;
    }
    const fresh = events.filter((e) => e.seq > view.lastSeq);
    view.cursor = batch.cursor;
    if (!fresh.length) return;
    view.lastSeq = fresh[fresh.length - 1].seq;
    view.events = view.events.concat(fresh).slice(-MAX_LINES);
    for (const event of fresh) trackEvent(event, true);
    ui.append(fresh);
  }

  /** Keeps who-is-here and our own name and color up to date from events. */
  function trackEvent(event, live) {
    if (event.type === 'nick' && event.from === identity.name && live) {
      if (isLeader) saveIdentity({ name: event.to });
      else identity = Object.assign({}, identity, { name: event.to });
      ui.showMe({ name: event.to, color: identity.color });
    }
    if (event.type === 'color' && event.from === identity.name && live) {
      if (isLeader) saveIdentity({ color: event.color });
      else identity = Object.assign({}, identity, { color: event.color });
      ui.showMe({ name: identity.name, color: event.color });
    }
    if (!live || !view.members) return;
    const members = view.members.filter((m) => m.name !== event.from);
    if (event.type === 'join' || event.type === 'color' || event.type === 'message' || event.type === 'me') {
      members.push({ name: event.from, color: event.color });
    } else if (event.type === 'nick') {
      members.push({ name: event.to, color: event.color });
    }
    if (event.type !== 'message' && event.type !== 'me' || members.length !== view.members.length) {
      setMembers(members);
    }
  }

  function setMembers(members) {
    view.members = members.slice().sort((a, b) => a.name.localeCompare(b.name));
    ui.showChannel(view.channel, view.members);
  }

  function systemLine(text, kind, everywhere) {
    ui.system(text, kind);
    if (everywhere) tell({ t: 'system', text, kind });
  }

  // ------------------------------------------------------------------- UI
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

  const RESET_NOTES = {
    gap: 'Some messages were missed while away; showing the latest.',
    epoch: 'The chat history was reset on the server.',
  };

  const ui = buildUi();

  function buildUi() {
    const host = document.createElement('talk-chat');
    host.setAttribute('mode', PAGE_MODE ? 'page' : 'widget');
    host.setAttribute('position', config.position);
    const root = host.attachShadow({ mode: 'open' });

    // The stylesheet the page links (so a self-hosted copy is used), else the
    // one beside this script. Its rules all start with :host, so the page's
    // own copy of it styles nothing in the page.
    const pageLink = [...document.querySelectorAll('link[rel~="stylesheet"]')]
      .find((link) => /(^|\/)talk\.css(\?|#|$)/.test(new URL(link.href, location.href).pathname + new URL(link.href, location.href).search));
    const cssHref = data.css || (pageLink && pageLink.href) || new URL('talk.css', scriptDir).href;
    const sheet = el('link', { rel: 'stylesheet', href: cssHref });
    const theme = {};
    for (const [attribute, variable] of [['background', '--talk-bg'], ['foreground', '--talk-fg'], ['accent', '--talk-accent']]) {
      const value = data[attribute];
      if (value && CSS.supports('color', value)) theme[variable] = value;
    }

    const launcherCount = el('span', { class: 'count', hidden: true });
    const launcher = el('button', { class: 'launcher', type: 'button', 'aria-expanded': 'false', 'aria-label': 'Open chat' },
      svgIcon(ICON_CHAT), el('span', { class: 'label', text: config.title }), launcherCount);

    const dot = el('span', { class: 'dot', 'aria-hidden': 'true' });
    const title = el('h2', { class: 'title', id: 'talk-title' });
    const whoButton = el('button', { class: 'who', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'talk-members', title: 'Who is here' });
    const minimize = el('button', { class: 'minimize', type: 'button', 'aria-label': 'Minimize chat', title: 'Minimize (Esc)' }, svgIcon(ICON_MINUS));
    const header = el('header', { class: 'bar' }, dot, title, whoButton, PAGE_MODE ? '' : minimize);
    const members = el('ul', { class: 'members', id: 'talk-members', hidden: true, 'aria-label': 'People here' });

    const statusText = el('span', { class: 'status-text' });
    const retry = el('button', { class: 'retry', type: 'button', text: 'Retry now', hidden: true });
    const status = el('div', { class: 'status', role: 'status' }, statusText, retry);

    const lines = el('ol', { class: 'lines', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': 'Messages' });
    const pending = el('ol', { class: 'pending', 'aria-label': 'Sending' });
    const scroller = el('div', { class: 'scroll', tabindex: '0', 'aria-label': 'Chat messages' }, lines, pending);
    const jump = el('button', { class: 'jump', type: 'button', hidden: true });

    const input = el('input', {
      class: 'input', type: 'text', maxlength: '1000', autocomplete: 'off', spellcheck: 'true',
      enterkeyhint: 'send', 'aria-label': 'Message, or a command such as /help', placeholder: 'Say something, or /help',
    });
    const sendButton = el('button', { class: 'send', type: 'submit', 'aria-label': 'Send' }, svgIcon(ICON_SEND));
    const form = el('form', { class: 'form' }, input, sendButton);

    const box = el('section', { class: 'box', 'aria-labelledby': 'talk-title' }, header, members, status, scroller, jump, form);
    const wrap = el('div', { class: 'talk', hidden: true, 'data-state': 'connecting' }, launcher, box);
    for (const [variable, value] of Object.entries(theme)) wrap.style.setProperty(variable, value);
    root.append(sheet, wrap);

    // Show nothing until the stylesheet is there, so the page never flashes
    // an unstyled chat.
    let shown = false;
    const show = () => { if (!shown) { shown = true; wrap.hidden = false; stickToBottom(); } };
    sheet.addEventListener('load', show);
    sheet.addEventListener('error', show);
    setTimeout(show, 4000);

    // The chat hangs off <html>, after <body>: a transform or filter that a
    // page puts on its body would otherwise pin the fixed box to the body.
    const mount = () => document.documentElement.append(host);
    if (document.body) mount();
    else document.addEventListener('DOMContentLoaded', mount);

    // ---- scrolling: stay at the bottom unless the reader scrolled up
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
    function trim() {
      while (lines.childElementCount > MAX_LINES) lines.firstElementChild.remove();
    }

    // ---- open / closed
    const ui = storage.get('|ui') || {};
    const narrow = window.matchMedia('(max-width: 520px)').matches;
    let open = PAGE_MODE || (!narrow && (typeof ui.open === 'boolean' ? ui.open : config.open));
    let unread = 0;
    function setOpen(value, focus) {
      open = PAGE_MODE || value;
      wrap.classList.toggle('open', open);
      host.toggleAttribute('open', open);
      launcher.setAttribute('aria-expanded', String(open));
      if (!PAGE_MODE) storage.set('|ui', Object.assign(storage.get('|ui') || {}, { open }));
      if (open) {
        unread = 0;
        showUnread();
        stickToBottom();
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
    const baseTitle = document.title;
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

    whoButton.addEventListener('click', () => {
      const expanded = members.hidden;
      members.hidden = !expanded;
      whoButton.setAttribute('aria-expanded', String(expanded));
    });

    // ---- input: send, history, commands
    const history = Array.isArray(ui.history) ? ui.history.slice(-50) : [];
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

    function submit(text) {
      const isCommand = text.startsWith('/');
      const { id, done } = send(text);
      let pendingLine = null;
      if (!isCommand) {
        pendingLine = el('li', { class: 'line message mine sending', 'data-id': id },
          nameOf(identity.name || 'you', identity.color), el('span', { class: 'colon', text: ': ' }));
        const body = el('span', { class: 'text', dir: 'auto' });
        appendText(body, text);
        pendingLine.append(body, el('span', { class: 'note', text: ' sending…' }));
        pending.append(pendingLine);
        stickToBottom();
      }
      done.then((answer) => {
        if (pendingLine) {
          // Sent; the line goes when the message comes back in a poll.
          pendingLine.classList.remove('sending');
          const note = pendingLine.querySelector('.note');
          if (note) note.textContent = '';
          if (lines.querySelector('[data-id="' + CSS.escape(id) + '"]')) pendingLine.remove();
        }
        if (answer && answer.reply) showReply(answer.reply);
      }, (error) => {
        if (pendingLine) pendingLine.remove();
        system(error.message || 'That did not work.', 'error');
      });
    }

    function showReply(reply) {
      switch (reply.type) {
        case 'joined':
          system('You are in #' + reply.channel + ' now.');
          break;
        case 'list': {
          const channels = reply.channels || [];
          system(channels.length
            ? 'Channels: ' + channels.map((c) => '#' + c.name + ' (' + c.members + ')').join(', ')
            : 'No channels have people in them.');
          break;
        }
        case 'who': {
          const line = systemNode('');
          line.append('In #' + reply.channel + ': ');
          (reply.members || []).forEach((member, index) => {
            if (index) line.append(', ');
            line.append(nameOf(member.name, member.color));
          });
          addSystem(line);
          break;
        }
        case 'nick':
          system('You are now called ' + reply.name + '.');
          break;
        case 'color': {
          const line = systemNode('Your color is now ');
          line.append(nameOf('#' + reply.color, reply.color), '.');
          addSystem(line);
          break;
        }
        case 'help':
          system('Commands:');
          for (const command of reply.commands || []) system(command.usage + ' — ' + command.about, 'help');
          system('Keys: ↑ and ↓ go through what you typed' + (PAGE_MODE ? '.' : ', Esc closes the chat.'), 'help');
          break;
        default:
          system('Done.');
      }
    }

    function systemNode(text, kind) {
      const line = el('li', { class: 'line system' + (kind ? ' ' + kind : '') });
      if (kind !== 'help') line.append(timeOf(Date.now()), ' ');
      line.append(text);
      return line;
    }
    function addSystem(line) {
      // A system line answers what this person just did: show it.
      lines.append(line);
      trim();
      stickToBottom();
    }
    function system(text, kind) {
      addSystem(systemNode(text, kind));
    }

    function renderAll(events, into) {
      for (const event of events) {
        const line = renderEvent(event);
        if (line) into.append(line);
      }
    }

    function dropPendingFor(events) {
      for (const event of events) {
        if (!event.id) continue;
        const line = pending.querySelector('[data-id="' + CSS.escape(event.id) + '"]');
        if (line) line.remove();
      }
    }

    const STATE_TEXT = {
      connecting: 'Connecting…',
      reconnecting: 'Reconnecting…',
      offline: 'The chat server cannot be reached.',
      refused: 'The chat is not available on this site.',
    };
    let countdown = null;

    return {
      system,
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
        if (RESET_NOTES[reason]) system(RESET_NOTES[reason], 'notice');
        dropPendingFor(events);
        // Sent lines whose message will not come back in this channel go too.
        for (const line of pending.querySelectorAll('.line:not(.sending)')) line.remove();
        stickToBottom();
      },
      append(events) {
        const wasAtBottom = atBottom();
        const fragment = document.createDocumentFragment();
        renderAll(events, fragment);
        lines.append(fragment);
        trim();
        dropPendingFor(events);
        const others = events.filter((e) => (e.type === 'message' || e.type === 'me') && e.from !== identity.name).length;
        if (others && (!open || document.hidden)) {
          unread += others;
          showUnread();
        }
        afterAdding(wasAtBottom, others);
      },
      showChannel(channel, people) {
        title.textContent = (config.title !== 'talk' ? config.title + ' · ' : '') + '#' + (channel || '…');
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
        input.placeholder = me && me.name ? 'Message as ' + me.name + ', or /help' : 'Say something, or /help';
      },
      showConn(state) {
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
      retryButton: retry,
    };
  }

  ui.retryButton.addEventListener('click', () => {
    if (isLeader) wakeAll();
    else tell({ t: 'wake' });
  });
  if (bus) bus.addEventListener('message', (event) => { if (event.data && event.data.t === 'wake' && isLeader) wakeAll(); });
  window.addEventListener('online', () => { if (isLeader) wakeAll(); });
  // A follower that was frozen or kept in the back/forward cache may have
  // missed answers: it asks the leader for everything again.
  const catchUp = () => {
    if (isLeader) {
      wakeAll();
    } else {
      view.channel = null;
      view.cursor = null;
      tell({ t: 'hello', tab: TAB });
    }
  };
  window.addEventListener('pageshow', (event) => { if (event.persisted) catchUp(); });
  document.addEventListener('resume', catchUp);

  ui.showConn(conn);
  ui.showChannel(null, null);
  ui.showMe(identity);
  tell({ t: 'hello', tab: TAB });
  elect();
})();
