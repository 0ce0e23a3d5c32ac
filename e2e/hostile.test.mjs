// hostile.test.mjs: message texts made to attack or break the chat (script
// tags, event-handler attributes, javascript: links, very long words, RTL
// text, emoji) are shown as the literal text they are, and nothing runs.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Chat, launchBrowser, screenshot, startServer, until, watchPage } from './lib/harness.mjs';

const HOSTILE = [
  '<script>window.__pwned = "script"</script>',
  '<img src=x onerror="window.__pwned = \'img\'">',
  '"><svg onload="window.__pwned = \'svg\'"></svg>',
  '<a href="javascript:window.__pwned = \'a\'">click me</a>',
  'javascript:window.__pwned = "bare"',
  '<style>* { display: none !important }</style>',
  '<iframe srcdoc="<script>parent.__pwned = 1</script>"></iframe>',
  '&lt;b&gt;not bold&lt;/b&gt; &amp; <b>not bold either</b>',
  '{{constructor.constructor("window.__pwned = 1")()}} ${window.__pwned = 1}',
  'https://example.com/?q="><img src=x onerror=window.__pwned=1>',
  'W'.repeat(900),
  'שלום עולם — مرحبا بالعالم — mixed ltr',
  '👩‍👩‍👧‍👦 🎉 😀 ✓ ñ',
];

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('hostile texts show as literal text and never execute', async () => {
  const open = async () => {
    const page = await (await browser.newContext()).newPage();
    const problems = watchPage(page);
    await page.goto(server.url + '/talk.html');
    const chat = new Chat(page);
    await chat.connected();
    return { chat, problems };
  };
  const sender = await open();
  const receiver = await open();
  for (const text of HOSTILE) await sender.chat.say(text);
  await sender.chat.say('/nick <b>bold</b>');

  for (const { chat } of [sender, receiver]) {
    const shown = await chat.waitForMessages(HOSTILE, 30000);
    assert.deepEqual(shown.slice(-HOSTILE.length), HOSTILE, 'each text exactly as sent');
    const report = await chat.page.evaluate(() => {
      const root = document.querySelector('talk-chat').shadowRoot;
      const log = root.querySelector('.lines');
      const scroller = root.querySelector('.scroll');
      return {
        pwned: window.__pwned ?? null,
        elements: [...log.querySelectorAll('*')].map((el) => el.tagName.toLowerCase())
          .filter((tag) => !['li', 'time', 'span', 'a'].includes(tag)),
        links: [...log.querySelectorAll('a')].map((a) => ({ href: a.getAttribute('href'), rel: a.rel, target: a.target })),
        overflowsSideways: scroller.scrollWidth > scroller.clientWidth + 1,
        rtlDirection: [...log.querySelectorAll('.text')].find((t) => t.textContent.startsWith('שלום'))?.getAttribute('dir'),
        styleSheetsInPage: document.styleSheets.length,
      };
    });
    assert.equal(report.pwned, null, 'no hostile code ran');
    assert.deepEqual(report.elements, [], 'no element came from a message');
    assert.ok(report.links.length >= 1, 'the http link is clickable');
    for (const link of report.links) {
      assert.match(link.href, /^https?:\/\//, 'only http(s) links');
      assert.equal(link.rel, 'noopener noreferrer nofollow');
      assert.equal(link.target, '_blank');
    }
    assert.equal(report.overflowsSideways, false, 'a very long word wraps inside the box');
    assert.equal(report.rtlDirection, 'auto', 'RTL text gets its own direction');
  }
  // The refused name is an error line, and the name stayed as it was.
  const errors = await until(async () => {
    const found = (await sender.chat.lines()).filter((l) => l.type === 'system error');
    return found.length && found;
  }, 15000, 'an error line for the bad /nick');
  assert.equal(errors.length, 1, 'the bad /nick is refused with one error line');
  assert.ok(!(await sender.chat.name()).includes('<'), 'the name did not change');

  // Clicking the javascript: text does nothing: it is not a link.
  await receiver.chat.page.locator('talk-chat .text', { hasText: 'javascript:window.__pwned = "bare"' }).click();
  assert.equal(await receiver.chat.page.evaluate(() => window.__pwned ?? null), null);
  await screenshot(receiver.chat.page, 'hostile-texts.png');
  // The refused /nick answers 400, which Chromium logs; nothing else may show.
  assert.deepEqual(sender.problems.filter((p) => !/status of (400|429)/.test(p)), []);
  assert.deepEqual(receiver.problems, []);
});
