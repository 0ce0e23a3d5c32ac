// widget.test.mjs: the widget as a person on a host page uses it: it
// collapses to a button with an unread count and opens again, works with the
// keyboard alone, announces messages to screen readers, does not yank a
// reader who scrolled up, fits a phone screen; and screenshots of it
// (expanded, collapsed, phone, the full page) are saved in e2e/artifacts/.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  Chat, embedSnippet, launchBrowser, screenshot, startPageServer, startServer, until, watchPage,
} from './lib/harness.mjs';

let server;
let pages;
let browser;
let reader; // the widget on the host page
let writer; // someone else, on /talk.html
const problems = [];

const box = (page) => page.locator('talk-chat .box');
const launcher = (page) => page.locator('talk-chat .launcher');
const shadowFocus = (page) => page.evaluate(() => { const el = document.querySelector('talk-chat').shadowRoot.activeElement; return el ? el.className || el.tagName.toLowerCase() : null; });

before(async () => {
  server = await startServer();
  const blog = `<!doctype html><html lang="en"><head><meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1"><title>A blog</title>
    ${embedSnippet(server, 'data-title="Blog chat" data-channel="blog"')}
    <style>body { font: 18px Georgia, serif; margin: 40px; background: #f4f1ea; color: #222 }</style></head>
    <body><h1>A blog post</h1><button id="before">A button of the page</button>
    ${'<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore.</p>'.repeat(12)}
    </body></html>`;
  pages = await startPageServer({
    '/blog.html': blog,
    '/themed.html': `<!doctype html><html><head><meta charset="utf-8"><title>Themed</title>
      ${embedSnippet(server, 'data-position="bottom-left" data-background="#101830" data-accent="rgb(255, 0, 102)" data-open="false" data-name="visitor"')}
      </head><body><h1>Themed</h1></body></html>`,
  });
  browser = await launchBrowser();

  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  problems.push(...watchPage(page));
  await page.goto(pages.origin + '/blog.html');
  reader = new Chat(page);
  await reader.connected();

  const other = await (await browser.newContext({ viewport: { width: 1000, height: 700 } })).newPage();
  problems.push(...watchPage(other));
  await other.goto(server.url + '/talk.html');
  writer = new Chat(other);
  await writer.connected();
  await writer.say('/nick marta');
  await writer.say('/join blog');
  await writer.waitForLine('You are in #blog now.');
});

after(async () => {
  await browser?.close();
  await pages?.close();
  await server?.stop();
});

describe('the widget on a host page', () => {
  test('starts expanded in the bottom-right corner, in its data-channel', async () => {
    const rect = await box(reader.page).boundingBox();
    const viewport = reader.page.viewportSize();
    assert.ok(Math.abs(rect.x + rect.width - (viewport.width - 16)) <= 2, `right edge ${JSON.stringify(rect)}`);
    assert.ok(Math.abs(rect.y + rect.height - (viewport.height - 16)) <= 2, `bottom edge ${JSON.stringify(rect)}`);
    assert.equal(await reader.page.locator('talk-chat .title').textContent(), 'Blog chat · #blog');
    const focused = await reader.page.evaluate(() => document.activeElement?.tagName);
    assert.equal(focused, 'BODY', 'the widget does not steal the page’s focus on load');
  });

  test('screenshot: expanded, with a conversation', async () => {
    await writer.say('Hi! Did you like the post?');
    await reader.waitForMessages(['Hi! Did you like the post?']);
    await reader.say('Yes, a lot. The part about https://example.com/comet was new to me.');
    await reader.say('/color ffb347');
    await writer.say('/me smiles');
    await writer.say('Glad to hear it 🎉');
    await reader.waitForMessages(['Glad to hear it 🎉']);
    await reader.waitForLine('* marta smiles');
    await screenshot(reader.page, 'widget-expanded.png');
    await screenshot(writer.page, 'talk-page.png');
  });

  test('new lines are announced to screen readers', async () => {
    const log = reader.page.locator('talk-chat .lines');
    assert.equal(await log.getAttribute('role'), 'log');
    assert.equal(await log.getAttribute('aria-live'), 'polite');
    assert.equal(await reader.page.locator('talk-chat .input').getAttribute('aria-label'), 'Message, or a command such as /help');
  });

  test('collapses to a button that counts unread messages', async () => {
    await reader.page.locator('talk-chat .minimize').click();
    await box(reader.page).waitFor({ state: 'hidden' });
    await writer.say('are you still there?');
    await writer.say('one more');
    await writer.say('and a third');
    const count = reader.page.locator('talk-chat .count');
    await until(async () => (await count.textContent()) === '3', 10000, 'an unread count of 3');
    assert.equal(await launcher(reader.page).getAttribute('aria-label'), 'Open chat, 3 unread');
    await screenshot(reader.page, 'widget-collapsed.png');
    await launcher(reader.page).click();
    await box(reader.page).waitFor({ state: 'visible' });
    assert.equal(await count.isHidden(), true);
    assert.equal(await shadowFocus(reader.page), 'input', 'opening focuses the input line');
  });

  test('works with the keyboard alone', async () => {
    const page = reader.page;
    await page.keyboard.press('Escape');
    await box(page).waitFor({ state: 'hidden' });
    assert.equal(await shadowFocus(page), 'launcher', 'Esc closes and focuses the button');
    await page.focus('#before');
    await page.keyboard.press('Tab');
    assert.equal(await shadowFocus(page), 'launcher', 'Tab from the page reaches the chat button');
    await page.keyboard.press('Enter');
    await box(page).waitFor({ state: 'visible' });
    assert.equal(await shadowFocus(page), 'input');
    await page.keyboard.type('typed with the keyboard');
    await page.keyboard.press('Enter');
    await writer.waitForMessages(['typed with the keyboard']);
    await page.keyboard.press('ArrowUp');
    assert.equal(await reader.input.inputValue(), 'typed with the keyboard');
    await reader.input.fill('');
    // Shift+Tab walks back through the links in the log to the log itself,
    // which can then be scrolled with the keyboard.
    let steps = 0;
    while ((await shadowFocus(page)) !== 'scroll' && steps < 6) {
      await page.keyboard.press('Shift+Tab');
      steps += 1;
    }
    assert.equal(await shadowFocus(page), 'scroll');
    await page.keyboard.press('Tab');
    assert.notEqual(await shadowFocus(page), null, 'Tab stays in the chat');
  });

  test('does not yank a reader who scrolled up', async () => {
    for (let i = 0; i < 24; i += 1) await writer.say(`filler line ${i}`);
    await reader.waitForMessages(['filler line 23'], 30000);
    const scroller = reader.page.locator('talk-chat .scroll');
    const position = () => scroller.evaluate((el) => ({ top: el.scrollTop, bottom: el.scrollHeight - el.clientHeight }));
    await until(async () => { const p = await position(); return Math.abs(p.top - p.bottom) < 2; }, 5000, 'the log at the bottom');
    await scroller.evaluate((el) => { el.scrollTop = 0; });
    await writer.say('a message while reading old ones');
    await reader.waitForMessages(['a message while reading old ones']);
    assert.equal((await position()).top, 0, 'the log stayed where the reader was');
    const jump = reader.page.locator('talk-chat .jump');
    await jump.waitFor({ state: 'visible' });
    assert.equal(await jump.textContent(), '1 new ↓');
    await jump.click();
    const after = await position();
    assert.ok(Math.abs(after.top - after.bottom) < 2, 'the button goes to the newest line');
    await writer.say('and now it follows again');
    await reader.waitForMessages(['and now it follows again']);
    await until(async () => { const p = await position(); return Math.abs(p.top - p.bottom) < 2; }, 5000, 'following new lines');
  });

  test('fits a phone screen', async () => {
    const context = await browser.newContext({ viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true });
    const page = await context.newPage();
    problems.push(...watchPage(page));
    await page.goto(pages.origin + '/blog.html');
    const phone = new Chat(page);
    await phone.connected();
    assert.equal(await box(page).isHidden(), true, 'on a phone the chat starts as a button');
    await launcher(page).tap();
    await box(page).waitFor({ state: 'visible' });
    const rect = await box(page).boundingBox();
    assert.deepEqual([rect.x, rect.y, rect.width, rect.height], [0, 0, 375, 667], 'the open chat fills the screen');
    const fontSize = await phone.input.evaluate((el) => getComputedStyle(el).fontSize);
    assert.equal(fontSize, '16px', 'no zoom on focus in mobile Safari');
    await phone.say('from a phone');
    await writer.waitForMessages(['from a phone']);
    await screenshot(page, 'widget-phone.png');
    await page.locator('talk-chat .minimize').tap();
    await box(page).waitFor({ state: 'hidden' });
    await context.close();
  });

  test('data attributes set position, colors, collapsed start and name', async () => {
    const page = await (await browser.newContext({ viewport: { width: 1000, height: 700 } })).newPage();
    problems.push(...watchPage(page));
    await page.goto(pages.origin + '/themed.html');
    const themed = new Chat(page);
    await themed.connected();
    assert.equal(await box(page).isHidden(), true, 'data-open="false" starts collapsed');
    const button = await launcher(page).boundingBox();
    assert.ok(Math.abs(button.x - 16) <= 1, `the button is bottom-left: ${JSON.stringify(button)}`);
    await launcher(page).click();
    const rect = await box(page).boundingBox();
    assert.ok(Math.abs(rect.x - 16) <= 1, `the box is bottom-left: ${JSON.stringify(rect)}`);
    const colors = await page.evaluate(() => {
      const root = document.querySelector('talk-chat').shadowRoot;
      return [root.querySelector('.box'), root.querySelector('.send')].map((el) => getComputedStyle(el).backgroundColor);
    });
    assert.deepEqual(colors, ['rgb(16, 24, 48)', 'rgb(255, 0, 102)']);
    assert.equal(await themed.name(), 'visitor', 'data-name is the name asked for');
    await page.context().close();
  });

  test('no page errors or console errors', () => {
    assert.deepEqual(problems, []);
  });
});
