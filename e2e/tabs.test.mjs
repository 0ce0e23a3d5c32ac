// tabs.test.mjs: ten tabs of one browser profile on one site share one
// identity and one long-poll: every tab receives every message once and can
// send, the profile never holds more than two /poll requests at once, and
// when the tab holding the poll closes another takes over without losing or
// repeating a message.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  Chat, checkSequence, delay, embedSnippet, launchBrowser, launchProfile, metric,
  startPageServer, startServer, until, watchPage,
} from './lib/harness.mjs';

const TABS = 10;
let server;
let pages;
let profile;
let browser;
const problems = [];

before(async () => {
  server = await startServer();
  pages = await startPageServer({
    '/docs.html': `<!doctype html><html><head><meta charset="utf-8"><title>Docs</title>
      ${embedSnippet(server)}</head><body><h1>Docs</h1></body></html>`,
  });
  profile = await launchProfile({ viewport: { width: 900, height: 700 } });
  browser = await launchBrowser();
});

after(async () => {
  await profile?.close();
  await browser?.close();
  await pages?.close();
  await server?.stop();
});

/** Texts of the messages a tab shows, each with how often it shows it. */
async function counts(chat) {
  const tally = new Map();
  for (const text of await chat.messages()) tally.set(text, (tally.get(text) || 0) + 1);
  return tally;
}

async function everyTabShowsOnce(tabs, texts) {
  for (const chat of tabs) {
    await chat.waitForMessages(texts, 30000);
    const tally = await counts(chat);
    for (const text of texts) assert.equal(tally.get(text), 1, `${text} shown once`);
    checkSequence(await chat.lines());
  }
}

test('ten tabs share one poll, all receive and send, and survive the leader closing', async () => {
  // Every /poll of the profile, from start to end, and the most at once.
  // A closed tab's poll is cancelled by the browser without a
  // requestfailed event, so polls are also dropped when their tab closes.
  const inFlight = new Set();
  let mostInFlight = 0;
  const pollsByPage = new Map();
  const isPoll = (request) => request.url() === server.url + '/poll';
  profile.on('request', (request) => {
    if (!isPoll(request)) return;
    inFlight.add(request);
    mostInFlight = Math.max(mostInFlight, inFlight.size);
    const page = request.frame().page();
    pollsByPage.set(page, (pollsByPage.get(page) || 0) + 1);
  });
  const done = (request) => inFlight.delete(request);
  profile.on('requestfinished', done);
  profile.on('requestfailed', done);
  const forgetOnClose = (page) => page.on('close', () => {
    for (const request of inFlight) if (request.frame().page() === page) inFlight.delete(request);
  });
  profile.pages().forEach(forgetOnClose);
  profile.on('page', forgetOnClose);
  let mostHeldOnServer = 0;
  const sampler = setInterval(async () => {
    const held = await metric(server, 'talk_polls_held').catch(() => 0);
    mostHeldOnServer = Math.max(mostHeldOnServer, held);
  }, 250);

  try {
    const tabs = [];
    for (let i = 0; i < TABS; i += 1) {
      const page = i === 0 ? (profile.pages()[0] || await profile.newPage()) : await profile.newPage();
      problems.push(...watchPage(page));
      await page.goto(pages.origin + '/docs.html');
      const chat = new Chat(page);
      await chat.connected();
      tabs.push(chat);
    }
    const name = await tabs[0].name();
    for (const chat of tabs) {
      await until(async () => (await chat.name()) === name, 10000, 'the shared name in every tab');
    }

    const other = new Chat(await (await browser.newContext()).newPage());
    await other.page.goto(server.url + '/talk.html');
    await other.connected();

    const said = [];
    for (let i = 0; i < TABS; i += 1) {
      said.push(`tab ${i} says hi`);
      await tabs[i].say(said[i]);
    }
    said.push('hello, all tabs');
    await other.say('hello, all tabs');
    await everyTabShowsOnce(tabs, said);
    await other.waitForMessages(said, 30000);
    const fromTabs = (await other.lines()).filter((l) => l.text && l.text.startsWith('tab '));
    assert.ok(fromTabs.every((l) => l.from === name), 'all tabs speak as one person');

    const polling = [...pollsByPage.keys()].filter((page) => !page.isClosed());
    assert.equal(polling.length, 1, 'exactly one tab polls');
    assert.ok(mostInFlight <= 2, `at most 2 polls at once from the profile, saw ${mostInFlight}`);

    // Close the tab that holds the poll while messages keep coming.
    const leader = polling[0];
    const survivors = tabs.filter((chat) => chat.page !== leader);
    const during = [];
    const outside = (async () => {
      for (let i = 0; i < 6; i += 1) {
        during.push(`during handover ${i}`);
        await other.say(`during handover ${i}`);
        // A pace, as a person types: the messages span the handover.
        await delay(150);
      }
    })();
    await survivors[0].waitForMessages(['during handover 0']);
    await leader.close();
    during.push('sent by a follower right after');
    await survivors[3].say('sent by a follower right after');
    await outside;
    await everyTabShowsOnce(survivors, [...said, ...during]);

    const pollingNow = [...pollsByPage.keys()].filter((page) => !page.isClosed());
    assert.equal(pollingNow.length, 1, 'one new tab took over the poll');

    // And once more, with the second leader.
    await pollingNow[0].close();
    const rest = survivors.filter((chat) => chat.page !== pollingNow[0]);
    await other.say('after the second handover');
    await rest[0].say('a tab speaks after the second handover');
    await everyTabShowsOnce(rest, [...said, ...during, 'after the second handover', 'a tab speaks after the second handover']);
    await other.waitForMessages(['a tab speaks after the second handover']);

    assert.ok(mostInFlight <= 2, `at most 2 polls at once from the profile, saw ${mostInFlight}`);
    assert.ok(mostHeldOnServer <= 3, `the server held at most 3 polls (2 from the profile, 1 other), saw ${mostHeldOnServer}`);
    assert.deepEqual(problems.filter((p) => !p.includes('429')), []);
  } finally {
    clearInterval(sampler);
  }
});
