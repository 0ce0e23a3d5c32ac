// isolation.test.mjs: a host page with aggressive global CSS does not break
// the widget (it looks exactly as on a plain page and still chats), and the
// widget, with talk.css linked by the page itself, restyles nothing of the
// host page, even elements with the same class names as the widget's.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  Chat, embedSnippet, launchBrowser, screenshot, startPageServer, startServer, watchPage,
} from './lib/harness.mjs';

// Rules a careless (or hostile) site might have, aimed at everything.
const AGGRESSIVE_CSS = `
  * { margin: 25px !important; padding: 25px !important; font: italic 40px/3 "Comic Sans MS", serif !important;
      color: #f0f !important; background: #ff0 !important; border: 5px dashed red !important;
      box-sizing: content-box !important; letter-spacing: 6px !important; text-transform: uppercase !important;
      visibility: visible !important; }
  /* On <html> itself these would move and fade anything fixed on the page,
     the widget too; everywhere else they must not reach it. */
  body, body *, html > :not(head):not(body) { opacity: .9 !important; transform: rotate(2deg) !important;
      filter: blur(1px) !important; contain: strict !important; }
  html > *, body > * { position: absolute !important; top: 0 !important; left: 0 !important; width: 40px !important;
      height: 40px !important; overflow: hidden !important; z-index: 1 !important; display: inline !important; }
  div, section, ol, li, span, button, input, form, header, time, a { all: unset !important; }
  .talk, .box, .bar, .lines, .line, .input, .launcher, .title, .scroll, .name, .text { display: none !important; }
  html { font-size: 5px !important; }
`;

// The widget's own class names, on the page's own elements.
const LOOKALIKES = `<h1 class="title">A page</h1>
  <div class="talk box"><header class="bar">bar</header><ol class="lines"><li class="line">
  <span class="name">n</span> <span class="text">t</span><time>12:00</time></li></ol>
  <form class="form"><input class="input" value="x"><button class="send launcher">b</button></form>
  <a href="#x">a link</a><p class="status">status</p><svg width="10" height="10"></svg></div>`;

let server;
let pages;
let browser;

before(async () => {
  server = await startServer();
  const page = (head, body) => `<!doctype html><html><head><meta charset="utf-8"><title>host</title>${head}</head><body>${body}</body></html>`;
  pages = await startPageServer({
    '/plain.html': page(embedSnippet(server), '<p>plain</p>'),
    '/aggressive.html': page(`<style>${AGGRESSIVE_CSS}</style>${embedSnippet(server)}`, '<p>aggressive</p>'),
    '/lookalikes.html': page('', LOOKALIKES),
    '/lookalikes-with-widget.html': page(embedSnippet(server), LOOKALIKES),
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await pages?.close();
  await server?.stop();
});

/** Computed styles that make up the widget's look, element by element. */
function widgetLook(page) {
  return page.evaluate(() => {
    const root = document.querySelector('talk-chat').shadowRoot;
    const props = ['display', 'position', 'width', 'height', 'color', 'background-color', 'font-size', 'font-family',
      'font-style', 'line-height', 'letter-spacing', 'text-transform', 'margin-top', 'padding-top', 'border-top-width',
      'opacity', 'transform', 'visibility'];
    const look = {};
    for (const selector of ['.talk', '.box', '.bar', '.title', '.scroll', '.lines', '.lines .line', '.lines .name', '.form', '.input', '.send']) {
      const el = root.querySelector(selector);
      const style = getComputedStyle(el);
      look[selector] = Object.fromEntries(props.map((p) => [p, style.getPropertyValue(p)]));
    }
    const host = getComputedStyle(document.querySelector('talk-chat'));
    look.host = Object.fromEntries(['position', 'right', 'bottom', 'z-index', 'opacity', 'transform', 'font-size', 'color']
      .map((p) => [p, host.getPropertyValue(p)]));
    const box = root.querySelector('.box').getBoundingClientRect();
    look.rect = { right: innerWidth - box.right, bottom: innerHeight - box.bottom, width: box.width, height: box.height };
    return look;
  });
}

/** Computed styles of every element of the page itself. */
function pageLook(page) {
  return page.evaluate(() => [...document.body.querySelectorAll('*')]
    .filter((el) => el.tagName !== 'TALK-CHAT' && el.tagName !== 'SCRIPT')
    .map((el) => {
      const style = getComputedStyle(el);
      return [el.tagName, el.className?.baseVal ?? el.className, ...[...style].map((p) => `${p}:${style.getPropertyValue(p)}`)].join(';');
    }));
}

test('aggressive page CSS does not change or break the widget', async () => {
  const look = async (path) => {
    const page = await (await browser.newContext({ viewport: { width: 1000, height: 700 } })).newPage();
    const problems = watchPage(page);
    await page.goto(pages.origin + path);
    const chat = new Chat(page);
    await chat.connected();
    await chat.say(`hello from ${path}`);
    await chat.waitForMessages([`hello from ${path}`]);
    return { chat, problems, look: await widgetLook(page) };
  };
  const plain = await look('/plain.html');
  const aggressive = await look('/aggressive.html');
  // The name's color differs per person and the log's height with its
  // lines; everything else must match.
  for (const { look: l } of [plain, aggressive]) {
    delete l['.lines .name'].color;
    delete l['.lines'].height;
  }
  for (const key of Object.keys(plain.look)) assert.deepEqual(aggressive.look[key], plain.look[key], `the look of ${key}`);
  assert.equal(aggressive.look.host.position, 'fixed');
  assert.ok(Math.abs(aggressive.look.rect.right - 16) < 1 && Math.abs(aggressive.look.rect.bottom - 16) < 1, JSON.stringify(aggressive.look.rect));
  await aggressive.chat.waitForMessages(['hello from /plain.html', 'hello from /aggressive.html']);
  await screenshot(aggressive.chat.page, 'widget-on-aggressive-css.png');
  assert.deepEqual([...plain.problems, ...aggressive.problems], []);
});

test('the widget and its stylesheet restyle nothing of the host page', async () => {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const without = await context.newPage();
  await without.goto(pages.origin + '/lookalikes.html');
  const before = await pageLook(without);
  const withWidget = await context.newPage();
  const problems = watchPage(withWidget);
  await withWidget.goto(pages.origin + '/lookalikes-with-widget.html');
  await new Chat(withWidget).connected();
  const afterLoad = await pageLook(withWidget);
  assert.equal(afterLoad.length, before.length);
  for (let i = 0; i < before.length; i += 1) assert.equal(afterLoad[i], before[i], `element ${i} of the page kept its style`);
  // talk.css is linked by the page too; none of its rules match the page.
  const matching = await withWidget.evaluate(async () => {
    const link = [...document.querySelectorAll('link[rel="stylesheet"]')].find((l) => l.href.endsWith('/talk.css'));
    // The sheet is from another origin, so read it again (CORS allows it).
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(await (await fetch(link.href)).text());
    const selectors = [];
    const walk = (rules) => {
      for (const rule of rules) {
        if (rule.cssRules) walk(rule.cssRules);
        if (rule.selectorText && document.querySelector(rule.selectorText)) selectors.push(rule.selectorText);
      }
    };
    walk(sheet.cssRules);
    return { found: Boolean(link), rules: sheet.cssRules.length, selectors };
  });
  assert.ok(matching.found && matching.rules > 20, 'the page linked talk.css');
  assert.deepEqual(matching.selectors, [], 'no rule of talk.css matches an element of the page');
  assert.deepEqual(problems, []);
});
