// cross-origin.test.mjs: the widget embedded on a page of another origin
// (another host name and port) chats with a person on the server's own
// /talk.html, with no CORS error and no preflight request (the seed's XDR
// and XHR chats talking to each other).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  Chat, checkSequence, embedSnippet, launchBrowser, startPageServer, startServer, watchPage,
} from './lib/harness.mjs';

let server;
let pages;
let browser;

before(async () => {
  server = await startServer();
  pages = await startPageServer({
    '/shop.html': () => `<!doctype html><html><head><meta charset="utf-8"><title>A shop</title>
      ${embedSnippet(server, 'data-title="Shop chat"')}</head>
      <body><h1>A shop on another origin</h1><p>Buy things.</p></body></html>`,
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await pages?.close();
  await server?.stop();
});

test('a widget on another origin chats with /talk.html, without preflight or CORS errors', async () => {
  assert.notEqual(new URL(pages.origin).hostname, new URL(server.url).hostname);
  assert.notEqual(new URL(pages.origin).port, new URL(server.url).port);

  const requests = [];
  const finished = [];
  const open = async (url) => {
    const context = await browser.newContext();
    // Every request as it starts; full headers (cookies, origin) of those
    // that finished, since a held poll's extra headers arrive only later.
    context.on('request', (request) => requests.push({ method: request.method(), url: request.url(), page: request.frame().url() }));
    context.on('requestfinished', (request) => finished.push(request.allHeaders()
      .then((headers) => ({ method: request.method(), url: request.url(), headers }), () => null)));
    const page = await context.newPage();
    const problems = watchPage(page);
    await page.goto(url);
    const chat = new Chat(page);
    await chat.connected();
    return { chat, problems };
  };
  const guest = await open(pages.origin + '/shop.html');
  const home = await open(server.url + '/talk.html');

  await guest.chat.say('hello from the shop');
  await home.chat.waitForMessages(['hello from the shop']);
  await home.chat.say('hello from talk.html');
  await guest.chat.waitForMessages(['hello from talk.html']);
  await guest.chat.say('/who');
  const who = await guest.chat.waitForLine('In #lobby:');
  assert.ok(who.line.includes(await home.chat.name()), who.line);
  for (const side of [guest, home]) checkSequence(await side.chat.lines());

  const toChat = requests.filter((r) => r.url.startsWith(server.url));
  assert.deepEqual(toChat.filter((r) => r.method === 'OPTIONS'), [], 'no preflight');
  const done = (await Promise.all(finished)).filter((r) => r && r.url.startsWith(server.url) && r.method === 'POST');
  const crossOrigin = done.filter((r) => r.headers.origin === pages.origin);
  assert.ok(crossOrigin.some((r) => r.url.endsWith('/poll')), 'the shop page polled the chat server itself');
  assert.ok(crossOrigin.some((r) => r.url.endsWith('/broadcast')), 'the shop page sent to the chat server itself');
  for (const request of done) {
    assert.match(request.headers['content-type'] || '', /^text\/plain/, `${request.url} is a simple request`);
    assert.equal(request.headers.cookie, undefined, 'no cookies');
    assert.ok(!request.url.includes('token'), 'no token in the URL');
  }
  assert.deepEqual(guest.problems, [], 'no CORS or other console errors on the shop page');
  assert.deepEqual(home.problems, [], 'no console errors on /talk.html');
  assert.equal(await guest.chat.page.locator('talk-chat .title').textContent(), 'Shop chat · #lobby');
});
