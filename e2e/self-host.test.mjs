// self-host.test.mjs: `talk client-files DIR` writes the browser client,
// which a site serves itself while proxying only /poll and /broadcast to the
// chat server (the seed's Apache setup, here a small Node proxy). The site
// is plain http on a host name that is not localhost (mapped to 127.0.0.1
// inside Chromium), so the page is not a secure context and has no Web
// Locks: the tabs elect their poller through the localStorage lease.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import { extname, join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  CHROMIUM_ARGS, Chat, checkSequence, launchBrowser, launchProfile, startServer, TALK_BIN, tempDir,
  until, watchPage,
} from './lib/harness.mjs';

const SITE_HOST = 'chat-site.test';
let server;
let site;
let siteUrl;
let filesDir;
let profile;
let browser;

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };

/** Serves `dir` and forwards /poll and /broadcast to the chat server. */
function startSite(dir, chatUrl) {
  const target = new URL(chatUrl);
  const proxy = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://site').pathname;
    if (path === '/poll' || path === '/broadcast') {
      const upstream = httpRequest({
        host: target.hostname, port: target.port, path, method: req.method,
        headers: { ...req.headers, host: target.host },
      }, (answer) => {
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
      });
      upstream.on('error', () => { res.writeHead(502); res.end(); });
      req.pipe(upstream);
      return;
    }
    try {
      const body = await readFile(join(dir, path === '/' ? 'talk.html' : path.slice(1).replace(/[/\\]/g, '')));
      res.writeHead(200, { 'content-type': TYPES[extname(path)] || 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(path === '/favicon.ico' ? 204 : 404);
      res.end();
    }
  });
  return new Promise((resolve) => proxy.listen(0, '127.0.0.1', () => resolve(proxy)));
}

before(async () => {
  server = await startServer();
  filesDir = await tempDir('talk-client-files-');
  execFileSync(TALK_BIN, ['client-files', filesDir], { stdio: 'pipe' });
  site = await startSite(filesDir, server.url);
  siteUrl = `http://${SITE_HOST}:${site.address().port}`;
  profile = await launchProfile({
    viewport: { width: 900, height: 700 },
    args: [...CHROMIUM_ARGS, `--host-resolver-rules=MAP ${SITE_HOST} 127.0.0.1`],
  });
  browser = await launchBrowser();
});

after(async () => {
  await profile?.close();
  await browser?.close();
  site?.closeAllConnections();
  await new Promise((r) => (site ? site.close(r) : r()));
  await server?.stop();
});

test('client-files writes the same files the server serves', async () => {
  const names = (await readdir(filesDir)).sort();
  assert.deepEqual(names, ['talk.css', 'talk.html', 'talk.js', 'talk.svg']);
  for (const name of names) {
    const served = Buffer.from(await (await fetch(`${server.url}/${name}`)).arrayBuffer());
    assert.ok(served.equals(await readFile(join(filesDir, name))), `${name} is the served file`);
  }
});

test('a self-hosted page on plain http chats, its tabs share one poll and hand it over', async () => {
  const tabs = [];
  const problems = [];
  const pollers = new Set();
  profile.on('request', (request) => {
    if (request.url() === `${siteUrl}/poll`) pollers.add(request.frame().page());
  });
  for (let i = 0; i < 4; i += 1) {
    const page = i === 0 ? (profile.pages()[0] || await profile.newPage()) : await profile.newPage();
    problems.push(watchPage(page));
    await page.goto(`${siteUrl}/talk.html`);
    const chat = new Chat(page);
    await chat.connected();
    tabs.push(chat);
  }
  const context = await tabs[0].page.evaluate(() => ({ secure: isSecureContext, locks: 'locks' in navigator }));
  assert.deepEqual(context, { secure: false, locks: false }, 'a page without Web Locks');

  const direct = new Chat(await (await browser.newContext()).newPage());
  await direct.page.goto(`${server.url}/talk.html`);
  await direct.connected();

  const said = ['self-hosted tab 0', 'self-hosted tab 3', 'from the chat server'];
  await tabs[0].say(said[0]);
  await tabs[3].say(said[1]);
  await direct.say(said[2]);
  for (const chat of [...tabs, direct]) await chat.waitForMessages(said, 30000);
  const live = () => [...pollers].filter((page) => !page.isClosed());
  assert.equal(live().length, 1, 'one tab polls');

  const leader = live()[0];
  const rest = tabs.filter((chat) => chat.page !== leader);
  await leader.close();
  await direct.say('while the lease moves');
  await direct.waitForMessages(['while the lease moves']);
  await rest[0].say('a follower after the handover');
  said.push('while the lease moves', 'a follower after the handover');
  for (const chat of rest) {
    const shown = await chat.waitForMessages(said, 30000);
    for (const text of said) assert.equal(shown.filter((t) => t === text).length, 1, `${text} once`);
    checkSequence(await chat.lines());
  }
  await direct.waitForMessages(said);
  await until(() => live().length === 1, 10000, 'one new poller');
  const expected = /Failed to load resource: the server responded with a status of 429/;
  assert.deepEqual(problems.flat().filter((p) => !expected.test(p)), []);
});
