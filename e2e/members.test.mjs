// members.test.mjs: the member list in the header ("2 here"). It comes from
// the server's `who` operation, not from a `/who` typed into the send queue
// (but from `/who` where a server older than the operation refuses it), and
// it keeps a person who sends an event of a type this widget does not know
// (a newer server's), as the protocol promises such events change nothing.
// The newer event is made by rewriting, in one browser's poll answers, the
// type of a message the other person really sent; the older server, by
// answering one browser's `who` requests as such a server does.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Chat, launchBrowser, startServer, until, watchPage } from './lib/harness.mjs';

let server;
let browser;
const problems = [];

before(async () => {
  // A short poll timeout keeps every held poll well within what a routed
  // request may take.
  server = await startServer({ args: ['--poll-timeout', '5'] });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Opens /talk.html as `name`; with `beforeWho`, the page's `who`
 * requests are answered as a server older than the operation answers them. */
async function open(name, { beforeWho = false } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = watchPage(page);
  problems.push(seen);
  if (beforeWho) {
    await page.route(server.url + '/broadcast', (route) => {
      if (JSON.parse(route.request().postData()).op !== 'who') return route.continue();
      const message = 'the request does not fit the protocol: unknown variant `who`, expected one of `start`, `send`, `leave`';
      return route.fulfill({ status: 400, json: { error: { code: 'bad_request', message } } });
    });
  }
  const broadcasts = [];
  page.on('request', (request) => {
    if (request.url() === server.url + '/broadcast') broadcasts.push(JSON.parse(request.postData()));
  });
  await page.goto(server.url + '/talk.html');
  const chat = new Chat(page);
  await chat.connected();
  await chat.say('/nick ' + name);
  await chat.waitForLine('You are now called ' + name + '.');
  return { chat, broadcasts };
}

/** The header's count and the names in the member list. */
function memberList(page) {
  return page.evaluate(() => {
    const root = document.querySelector('talk-chat').shadowRoot;
    return {
      count: root.querySelector('.who').textContent,
      names: [...root.querySelectorAll('.members .name')].map((node) => node.textContent),
    };
  });
}

test('the member list comes from who and keeps a sender of an unknown event type', async () => {
  const alice = await open('alice');
  const bob = await open('bob');
  await until(async () => (await memberList(alice.chat.page)).count === '2 here', 15000, 'alice sees 2 here');
  assert.deepEqual((await memberList(alice.chat.page)).names, ['alice', 'bob']);

  // The list was asked for with the `who` operation; no `/who` was sent.
  const ops = alice.broadcasts.map((body) => body.op);
  assert.ok(ops.includes('who'), `alice's requests: ${JSON.stringify(ops)}`);
  assert.ok(!alice.broadcasts.some((body) => body.text === '/who'), 'no /who through the send queue');

  // From now on, alice's poll answers carry bob's "from the future" as an
  // event of a type no widget knows yet.
  await alice.chat.page.route(server.url + '/poll', async (route) => {
    const response = await route.fetch();
    const answer = await response.json();
    for (const event of answer.events || []) {
      if (event.type === 'message' && event.text === 'from the future') {
        event.type = 'hologram';
        delete event.text;
      }
    }
    await route.fulfill({ response, json: answer });
  });
  // The poll held while the route was set is not routed: let it return.
  await bob.chat.say('before the future');
  await alice.chat.waitForMessages(['before the future']);

  await bob.chat.say('from the future');
  await bob.chat.waitForMessages(['from the future']);
  // Alice's own next message comes after the unknown event in her stream,
  // so once it shows, the unknown event has been taken in.
  await alice.chat.say('after the future');
  await alice.chat.waitForMessages(['after the future']);

  assert.ok(!(await alice.chat.messages()).includes('from the future'), 'the unknown event shows nothing');
  assert.deepEqual(await memberList(alice.chat.page), { count: '2 here', names: ['alice', 'bob'] });
  // The poll held now is still routed: let it go unanswered.
  await alice.chat.page.unrouteAll({ behavior: 'ignoreErrors' });
  assert.deepEqual(problems.flat(), []);
});

test('against a server older than who, the list comes from /who', async () => {
  const carol = await open('carol', { beforeWho: true });
  await until(async () => (await memberList(carol.chat.page)).count === '3 here', 15000, 'carol sees 3 here');
  assert.deepEqual((await memberList(carol.chat.page)).names, ['alice', 'bob', 'carol']);
  assert.ok(carol.broadcasts.some((body) => body.op === 'who'), 'who was tried first');
  assert.ok(carol.broadcasts.some((body) => body.text === '/who'), 'then /who went through the send queue');
  // The browser logs each refused request; nothing else may show.
  const refusals = /status of 400/;
  assert.deepEqual(problems.pop().filter((problem) => !refusals.test(problem)), []);
});
