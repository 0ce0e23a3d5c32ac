// refused-origin.test.mjs: the widget on a page whose origin is not on the
// server's allow-list (--allow-origin) says the chat is not available on
// this site, and stops: no retry, however long the page stays open.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  embedSnippet, launchBrowser, metric, screenshot, startPageServer, startServer, until, watchPage,
} from './lib/harness.mjs';

let server;
let pages;
let browser;

before(async () => {
  server = await startServer({ args: ['--allow-origin', 'https://only-this.example'] });
  pages = await startPageServer({
    '/shop.html': () => `<!doctype html><html><head><meta charset="utf-8"><title>A shop</title>
      ${embedSnippet(server, 'data-title="Shop chat"')}</head>
      <body><h1>A shop the chat does not serve</h1><p>Buy things.</p></body></html>`,
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await pages?.close();
  await server?.stop();
});

test('a page on an origin off the allow-list says the chat is not available, and stops', async () => {
  const context = await browser.newContext();
  const toChat = [];
  context.on('request', (request) => {
    if (request.url().startsWith(server.url) && request.method() === 'POST') {
      toChat.push(new URL(request.url()).pathname);
    }
  });
  const page = await context.newPage();
  const problems = watchPage(page);
  // The page's timers run on a clock the test moves: minutes of retries,
  // if there were any, pass at once.
  await page.clock.install();
  await page.goto(pages.origin + '/shop.html');

  const status = page.locator('talk-chat .status-text');
  await until(async () => (await status.textContent()) === 'The chat is not available on this site.',
    15000, 'the refusal shown');
  assert.equal(await page.locator('talk-chat .talk').getAttribute('data-state'), 'refused');
  assert.equal(await page.locator('talk-chat .retry').isHidden(), true, 'no retry button');
  assert.equal(await page.locator('talk-chat .input').isDisabled(), true, 'nothing can be typed');
  const refusals = await metric(server, 'talk_errors_total\\{code="origin_not_allowed"\\}');
  assert.equal(refusals, 1, 'one request was refused');
  assert.deepEqual(toChat, ['/broadcast'], 'the session start, and nothing after it');

  // Ten minutes later (on the page's clock): still no request.
  await page.clock.runFor('10:00');
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => resolve())));
  assert.equal(await metric(server, 'talk_errors_total\\{code="origin_not_allowed"\\}'), 1,
    'the server saw no request after the refusal');
  assert.deepEqual(toChat, ['/broadcast'], 'the page sent nothing after the refusal');
  assert.equal(await status.textContent(), 'The chat is not available on this site.');

  await screenshot(page, 'widget-refused-origin.png');
  // The refusal is readable, so the console shows no CORS error; Chromium
  // still reports the 403 itself as a failed resource.
  assert.deepEqual(problems.filter((p) => !/status of 403/.test(p)), [], 'no CORS or other errors');
  await context.close();
});
