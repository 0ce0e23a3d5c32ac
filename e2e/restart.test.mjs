// restart.test.mjs: the server is restarted mid-conversation (a graceful
// stop, then a kill -9): the widget shows that it is reconnecting, keeps
// what was typed meanwhile, and resumes with no message lost or shown twice.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  Chat, checkSequence, embedSnippet, launchBrowser, screenshot, startPageServer, startServer, until, watchPage,
} from './lib/harness.mjs';

let server;
let pages;
let browser;

before(async () => {
  server = await startServer();
  pages = await startPageServer({
    '/news.html': `<!doctype html><html><head><meta charset="utf-8"><title>News</title>
      ${embedSnippet(server)}</head><body><h1>News</h1></body></html>`,
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await pages?.close();
  await server?.stop();
});

async function restart(signal) {
  const { port, dataDir } = server;
  await server.stop(signal);
  return async () => {
    server = await startServer({ port, dataDir });
  };
}

async function showsOnce(chat, texts) {
  const shown = await chat.waitForMessages(texts, 40000);
  for (const text of texts) assert.equal(shown.filter((t) => t === text).length, 1, `${text} shown once`);
  checkSequence(await chat.lines());
}

test('a restarted server: reconnecting, then nothing lost or doubled', async () => {
  const open = async (url) => {
    const page = await (await browser.newContext({ viewport: { width: 900, height: 640 } })).newPage();
    const problems = watchPage(page);
    await page.goto(url);
    const chat = new Chat(page);
    await chat.connected();
    return { chat, problems };
  };
  const { chat: reader, problems } = await open(pages.origin + '/news.html');
  const { chat: writer } = await open(server.url + '/talk.html');
  const readerName = await reader.name();

  const said = ['before 1', 'before 2', 'before 3'];
  for (const text of said) await writer.say(text);
  await showsOnce(reader, said);

  // A graceful stop: held polls are answered with a reconnect hint.
  const startAgain = await restart('SIGTERM');
  for (const chat of [reader, writer]) {
    await until(async () => ['reconnecting', 'offline'].includes(await chat.state()), 15000, 'a reconnecting state');
  }
  const status = reader.page.locator('talk-chat .status');
  await status.waitFor({ state: 'visible' });
  assert.match(await status.textContent(), /Reconnecting|cannot be reached/);
  await reader.say('typed while the server was down');
  await reader.page.locator('talk-chat .pending .sending').waitFor({ state: 'visible' });
  await screenshot(reader.page, 'widget-reconnecting.png');
  await startAgain();
  for (const chat of [reader, writer]) await chat.connected(40000);
  said.push('typed while the server was down');
  await writer.say('after the restart');
  said.push('after the restart');
  for (const chat of [reader, writer]) await showsOnce(chat, said);
  assert.equal(await reader.name(), readerName, 'the same name after the restart');
  await until(async () => (await reader.page.locator('talk-chat .pending li').count()) === 0, 5000, 'no pending line left');

  // kill -9: no goodbye at all; acknowledged messages are on disk.
  await writer.say('acknowledged before the crash');
  await reader.waitForMessages(['acknowledged before the crash']);
  said.push('acknowledged before the crash');
  const startAfterCrash = await restart('SIGKILL');
  await writer.say('typed after the crash');
  said.push('typed after the crash');
  await startAfterCrash();
  for (const chat of [reader, writer]) await chat.connected(40000);
  await reader.say('the reader is back');
  said.push('the reader is back');
  for (const chat of [reader, writer]) await showsOnce(chat, said);
  assert.deepEqual(problems.filter((p) => !/Failed to load resource|ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|ERR_CONNECTION_RESET/.test(p)), []);
});
