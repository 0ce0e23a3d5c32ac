// harness.mjs: what every browser test needs: the real `talk` server on a
// free loopback port (started, restarted and killed by PID), a second tiny
// HTTP server for host pages on another origin, Debian's Chromium through
// playwright-core, and helpers that read the widget inside its shadow root.

import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const E2E_DIR = resolve(here, '..');
export const WORKSPACE = resolve(E2E_DIR, '..');
export const ARTIFACTS = join(E2E_DIR, 'artifacts');
export const TALK_BIN = process.env.TALK_BIN || join(WORKSPACE, 'target', 'debug', 'talk');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-quic',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// Every server process this test file started, so none outlives it even
// when a test throws before its cleanup.
const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone already */ }
  }
});

/** Makes a fresh temporary folder. */
export function tempDir(prefix) {
  return mkdtemp(join(tmpdir(), prefix));
}

/**
 * Starts `talk serve` on 127.0.0.1 (port 0 picks a free one) with its data in
 * `dataDir`, and resolves once it printed `listening on http://…`.
 */
export async function startServer({ dataDir, port = 0, args = [] } = {}) {
  dataDir = dataDir || await tempDir('talk-e2e-data-');
  const child = spawn(TALK_BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--data', dataDir, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn', NO_COLOR: '1' },
  });
  running.add(child);
  let log = '';
  const url = await new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`talk serve did not start in 20 s:\n${log}`)), 20000);
    const onData = (chunk) => {
      log += chunk;
      const match = /listening on (http:\/\/[0-9.]+:(\d+))/.exec(log);
      if (match) {
        clearTimeout(timer);
        resolvePromise(match[1]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`talk serve exited (${code ?? signal}) before listening:\n${log}`));
    });
  });
  const server = {
    url,
    port: Number(new URL(url).port),
    dataDir,
    child,
    get log() { return log; },
    /** Stops the server by PID with `signal` and waits until it is gone. */
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      process.kill(child.pid, signal);
      const result = await Promise.race([exited.then(() => true), delay(10000).then(() => false)]);
      if (!result) {
        process.kill(child.pid, 'SIGKILL');
        await exited;
      }
      running.delete(child);
    },
  };
  return server;
}

/** Reads a Prometheus gauge or counter from the server's /metrics. */
export async function metric(server, name) {
  const text = await (await fetch(server.url + '/metrics')).text();
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return match ? Number(match[1]) : NaN;
}

/**
 * Serves host pages from a second origin: `pages` maps a path to HTML. The
 * server listens on 127.0.0.1 and is addressed as http://localhost:PORT, so
 * host name and port both differ from the chat server's.
 */
export async function startPageServer(pages) {
  const server = createServer((request, response) => {
    const path = new URL(request.url, 'http://localhost').pathname;
    const page = pages[path];
    if (path === '/favicon.ico') {
      response.writeHead(204);
      response.end();
      return;
    }
    if (page === undefined) {
      response.writeHead(404, { 'content-type': 'text/plain' });
      response.end('not found');
      return;
    }
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    response.end(typeof page === 'function' ? page() : page);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://localhost:${server.address().port}`;
  return {
    origin,
    pages,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

/** The copy-paste embedding snippet of the README, pointed at `server`. */
export function embedSnippet(server, attributes = '') {
  return `<link rel="stylesheet" href="${server.url}/talk.css">\n`
    + `<script src="${server.url}/talk.js" defer ${attributes}></script>`;
}

/** Launches Debian's Chromium, headless, with a fresh profile. */
export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/** One Chromium profile (its own folder) whose tabs share storage and locks. */
export async function launchProfile(options = {}) {
  const profile = await tempDir('talk-e2e-profile-');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, ...options,
  });
  const close = context.close.bind(context);
  context.close = async () => {
    await close();
    await rm(profile, { recursive: true, force: true });
  };
  return context;
}

/** Collects what a page said that a test must never see. */
export function watchPage(page) {
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') problems.push(`console ${message.type()}: ${message.text()}`);
  });
  page.on('dialog', (dialog) => {
    problems.push(`dialog: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  return problems;
}

/** Saves a screenshot into e2e/artifacts/. */
export async function screenshot(target, name) {
  await mkdir(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, name);
  await target.screenshot({ path });
  return path;
}

/** Polls `check` until it returns a truthy value (returned) or fails after `ms`. */
export async function until(check, ms = 15000, what = 'condition') {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await delay(100);
  }
}

/**
 * The widget on one page. Playwright's CSS locators pierce open shadow
 * roots, so `.lines` finds the widget's message list inside `talk-chat`.
 */
export class Chat {
  constructor(page) {
    this.page = page;
    this.input = page.locator('talk-chat .input');
  }

  /** Waits until the widget says it is connected. */
  async connected(ms = 15000) {
    await this.page.locator('talk-chat .talk[data-state="connected"]').waitFor({ state: 'attached', timeout: ms });
  }

  /** The connection state the widget shows. */
  state() {
    return this.page.locator('talk-chat .talk').getAttribute('data-state');
  }

  /** Types `text` into the input line and presses Enter. */
  async say(text) {
    await this.input.fill(text);
    await this.input.press('Enter');
  }

  /** Every line of the log as { seq, type, id, from, text, line }. */
  lines() {
    return this.page.evaluate(() => {
      const root = document.querySelector('talk-chat').shadowRoot;
      return [...root.querySelectorAll('.lines > li')].map((li) => ({
        seq: li.dataset.seq === undefined ? null : Number(li.dataset.seq),
        type: [...li.classList].filter((c) => c !== 'line').join(' '),
        id: li.dataset.id || null,
        from: li.querySelector('.name') ? li.querySelector('.name').textContent : null,
        text: li.querySelector('.text') ? li.querySelector('.text').textContent : null,
        line: li.textContent,
      }));
    });
  }

  /** The texts of the chat messages shown, in order. */
  async messages() {
    return (await this.lines()).filter((l) => l.type === 'message').map((l) => l.text);
  }

  /** Waits until a line containing `fragment` is shown, and returns it. */
  waitForLine(fragment, ms = 15000) {
    return until(async () => (await this.lines()).find((l) => l.line.includes(fragment)), ms, `a line with ${JSON.stringify(fragment)}`);
  }

  /** Waits until every text of `texts` is shown as a message. */
  waitForMessages(texts, ms = 20000) {
    return until(async () => {
      const shown = await this.messages();
      return texts.every((t) => shown.includes(t)) && shown;
    }, ms, `messages ${JSON.stringify(texts).slice(0, 200)}`);
  }

  /** The name this widget chats as (from its placeholder). */
  async name() {
    const placeholder = await this.input.getAttribute('placeholder');
    const match = /Message as (\S+?),/.exec(placeholder || '');
    return match ? match[1] : null;
  }
}

/** Asserts the invariants of a log: event seqs strictly consecutive, none twice. */
export function checkSequence(lines) {
  const seqs = lines.filter((l) => l.seq !== null).map((l) => l.seq);
  for (let i = 1; i < seqs.length; i += 1) {
    if (seqs[i] !== seqs[i - 1] + 1) {
      throw new Error(`seqs not consecutive at ${i}: ${seqs.slice(Math.max(0, i - 3), i + 3).join(',')} (all: ${seqs.join(',')})`);
    }
  }
  return seqs;
}

export { delay };
