// The dashboard walked in a real headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core), as a person would use it:
// sign in with a password and a TOTP code, search and share a link, watch
// the live stream (also while the tab is hidden), switch times between UTC
// and the local zone, open an event and its proof, export, change a job,
// download reports, sign out.
//
// Started by crates/cli/tests/browser.rs, which runs the server and passes
// everything this needs as JSON in SEALTRAIL_BROWSER_FIXTURE. Throughout,
// any console error, uncaught page error, Content-Security-Policy
// violation or dialog (a sign that hostile event text ran) fails the run.
// Prints one line per flow and closes with "N passed, N failed".

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const fixture = JSON.parse(process.env.SEALTRAIL_BROWSER_FIXTURE ?? 'null');
if (!fixture) {
  console.error('SEALTRAIL_BROWSER_FIXTURE is not set: run this through crates/cli/tests/browser.rs');
  process.exit(2);
}
const base = fixture.base;
const log = fixture.log;
const shots = fixture.screenshots;

// The whole run is bounded: a hung page must not hang the test command.
setTimeout(() => {
  console.error('dashboard.mjs: gave up after 150 s');
  process.exit(1);
}, 150_000).unref();

// ---------------------------------------------------------------- TOTP

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32Decode(text) {
  const clean = text.replace(/[\s=-]/g, '').toUpperCase();
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of clean) {
    const v = BASE32.indexOf(c);
    if (v < 0) throw new Error(`TOTP secret ${JSON.stringify(text)} is not base32 (${JSON.stringify(c)})`);
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** The RFC 6238 code (HMAC-SHA1, 30 s steps) of time step `counter`. */
function totpAt(secret, counter, digits = 6) {
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = crypto.createHmac('sha1', base32Decode(secret)).update(message).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 10 ** digits;
  return String(code).padStart(digits, '0');
}

const step = (ms = Date.now()) => Math.floor(ms / 1000 / 30);

// RFC 6238 appendix B (SHA-1 key "12345678901234567890"): a wrong
// implementation here would make every sign-in below fail for the wrong reason.
for (const [time, expected] of [[59, '94287082'], [1111111109, '07081804'], [2000000000, '69279037']]) {
  const got = totpAt('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ', Math.floor(time / 30), 8);
  if (got !== expected) throw new Error(`TOTP self-check: ${got} at ${time}, RFC 6238 says ${expected}`);
}

// A code works once (the server stores the step it matched) and the
// server accepts one step of skew either way: after using the current
// step, the next one is taken at once; only a third code within one step
// waits for time to move on.
const usedSteps = new Map();
async function freshTotp(secret) {
  for (;;) {
    const last = usedSteps.get(secret);
    const next = last === undefined ? step() : Math.max(step(), last + 1);
    if (next <= step() + 1) {
      usedSteps.set(secret, next);
      return totpAt(secret, next);
    }
    await sleep(250);
  }
}

// ---------------------------------------------------------------- watching

const problems = [];
const documents = new Set();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function fail(message) {
  throw new Error(message);
}

function check(condition, message) {
  if (!condition) fail(message);
}

let browser;

/** A fresh browser context (cookies, storage) with every watcher attached. */
async function newContext(label, options = {}) {
  const context = await browser.newContext({ acceptDownloads: true, ...options });
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(15_000);
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`Content Security Policy violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  context.on('console', (m) => {
    if (m.type() !== 'error' && !/content.security.policy/i.test(m.text())) return;
    const at = m.location()?.url ?? '';
    // Chromium reports every non-2xx answer as a console error, the
    // document's own too: a refused sign-in is 401 by design, and the
    // flows check the status of the pages they load. Anything a page
    // loads itself (styles, scripts, images, streams) must succeed.
    if (/^Failed to load resource/.test(m.text()) && documents.has(at)) return;
    problems.push(`${label} ${m.page()?.url() ?? ''}: console ${m.type()}: ${m.text()}${at ? ` (${at})` : ''}`);
  });
  context.on('request', (r) => {
    if (r.isNavigationRequest()) documents.add(r.url());
  });
  context.on('weberror', (e) => problems.push(`${label} ${e.page()?.url() ?? ''}: uncaught ${e.error()}`));
  context.on('dialog', async (d) => {
    problems.push(`${label} ${d.page()?.url() ?? ''}: a ${d.type()} dialog opened (${JSON.stringify(d.message())}): page text ran as script`);
    await d.dismiss().catch(() => {});
  });
  context.on('response', (r) => {
    if (r.status() >= 500) problems.push(`${label}: ${r.status()} from ${r.request().method()} ${r.url()}`);
  });
  return context;
}

async function screenshot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

function pathOf(page) {
  const url = new URL(page.url());
  return url.pathname + url.search;
}

/** No element or attribute that could run page text: no inline script,
 *  no `on*` attribute, no javascript: URL, nothing of the hostile markup parsed. */
async function assertInert(page, where) {
  const found = await page.evaluate(() => {
    const bad = [];
    for (const s of document.querySelectorAll('script')) {
      // Data blocks (chart series as JSON) never run; anything else must be a file of this server.
      if (!s.src && s.type === 'application/json') continue;
      if (!s.src || new URL(s.src).origin !== location.origin) bad.push(`script ${s.src || s.textContent.slice(0, 60)}`);
    }
    for (const el of document.querySelectorAll('*')) {
      for (const a of el.attributes) {
        if (/^on/i.test(a.name)) bad.push(`${el.tagName} ${a.name}=${a.value.slice(0, 60)}`);
        if (/^\s*javascript:/i.test(a.value)) bad.push(`${el.tagName} ${a.name}=${a.value.slice(0, 60)}`);
      }
    }
    for (const el of document.querySelectorAll('iframe, svg[onload], img[src="x"]')) bad.push(el.outerHTML.slice(0, 80));
    return bad;
  });
  check(found.length === 0, `${where}: markup that could run: ${found.join('; ')}`);
}

// ---------------------------------------------------------------- sign-in

async function submit(page, form) {
  await Promise.all([
    page.waitForNavigation({ waitUntil: 'load' }),
    form.locator('button[type=submit], input[type=submit], button:not([type])').first().click(),
  ]);
}

/** Sign in through /login; `secret` answers the TOTP question if asked. */
async function signIn(page, user, { secret, next = '/', expectTotp } = {}) {
  await page.goto(`${base}/login?next=${encodeURIComponent(next)}`);
  const form = page.locator('form:has(input[name=password])');
  await form.locator('input[name=username]').fill(user.name);
  await form.locator('input[name=password]').fill(user.password);
  const totpNow = form.locator('input[name=totp]');
  let askedTotp = false;
  if ((await totpNow.count()) > 0 && (await totpNow.isVisible()) && secret) {
    await totpNow.fill(await freshTotp(secret));
    askedTotp = true;
  }
  await submit(page, form);
  const second = page.locator('form:has(input[name=totp])');
  if (new URL(page.url()).pathname === '/login' && (await second.count()) > 0 && !askedTotp) {
    askedTotp = true;
    check(secret, `${user.name}: asked for a TOTP code but has none enrolled`);
    await answerTotp(page, second, user, await freshTotp(secret));
  }
  if (expectTotp !== undefined) {
    check(askedTotp === expectTotp, `${user.name}: TOTP ${expectTotp ? 'was never asked for' : 'was asked for without being enrolled'}`);
  }
  check(pathOf(page) === next, `${user.name}: signing in led to ${page.url()}, not ${next}: ${await mainText(page)}`);
}

/** The second step of a sign-in: the password again (when the form asks
 *  for it) and the code. */
async function answerTotp(page, form, user, code) {
  const password = form.locator('input[name=password]');
  if ((await password.count()) > 0 && (await password.inputValue()) === '') await password.fill(user.password);
  await form.locator('input[name=totp]').fill(code);
  await submit(page, form);
}

async function mainText(page) {
  return (await page.locator('main').innerText().catch(() => '')).slice(0, 400).replace(/\s+/g, ' ');
}

/** The TOTP secret a page shows: from an otpauth:// URI, or the base32 text. */
async function shownSecret(page) {
  const marked = page.locator('main code.secret');
  if ((await marked.count()) > 0) return (await marked.first().innerText()).replace(/[\s-]/g, '');
  const html = await page.content();
  const uri = html.match(/otpauth:\/\/totp\/[^"'<\s]*/);
  if (uri) {
    const secret = new URL(uri[0].replace(/&amp;/g, '&')).searchParams.get('secret');
    if (secret) return secret;
  }
  const text = await page.locator('main').innerText();
  const plain = text.match(/\b([A-Z2-7]{4}(?:[ -]?[A-Z2-7]{4}){3,})\b/);
  check(plain, `no TOTP secret shown on ${page.url()}: ${text.slice(0, 300)}`);
  return plain[1].replace(/[ -]/g, '');
}

// ---------------------------------------------------------------- flows

const state = {};

const flows = [
  {
    name: 'anonymous visitors are sent to sign in and brought back',
    async run() {
      const context = await newContext('anonymous');
      const page = await context.newPage();
      const wanted = `/search?log=${log}&text=quartz`;
      await page.goto(base + wanted);
      const url = new URL(page.url());
      check(url.pathname === '/login', `an anonymous visit to ${wanted} ended at ${page.url()}`);
      check(url.searchParams.get('next') === wanted, `next is ${url.searchParams.get('next')}, not ${wanted}`);
      for (const field of ['username', 'password']) {
        const input = page.locator(`input[name=${field}]`);
        check((await input.count()) === 1, `/login has no ${field} field`);
        const id = await input.getAttribute('id');
        check(id && (await page.locator(`label[for="${id}"]`).count()) === 1, `/login's ${field} field has no label`);
      }
      await screenshot(page, 'login');
      // A wrong password is refused, on the sign-in page again.
      await page.locator('input[name=username]').fill(fixture.admin.name);
      await page.locator('input[name=password]').fill(`${fixture.admin.password}!`);
      await submit(page, page.locator('form:has(input[name=password])'));
      check(new URL(page.url()).pathname === '/login', `a wrong password led to ${page.url()}`);
      await context.close();
    },
  },
  {
    name: 'an admin signs in with a password',
    async run() {
      const context = await newContext('admin');
      const page = await context.newPage();
      await signIn(page, fixture.admin, { next: '/', expectTotp: false });
      state.admin = context;
      await page.close();
    },
  },
  {
    name: 'the admin enrols TOTP on /account, then needs it to sign in',
    needs: ['admin'],
    async run() {
      const page = await state.admin.newPage();
      await page.goto(`${base}/account`);
      await screenshot(page, 'account');
      const section = (await page.locator('#totp').count()) > 0 ? page.locator('#totp') : page.locator('main');
      const codeField = 'input[name=code], input[name=totp]';
      if ((await section.locator(codeField).count()) === 0) {
        const start = section.locator(`form:not(:has(${codeField}))`, { hasText: /totp|two.step|two.factor|authenticator|set up|enrol/i });
        check((await start.count()) > 0, `/account offers no TOTP enrolment: ${await mainText(page)}`);
        await submit(page, start.first());
      }
      const secret = await shownSecret(page);
      await screenshot(page, 'account-totp');
      const confirm = section.locator(`form:has(${codeField})`);
      await confirm.locator(codeField).fill(await freshTotp(secret));
      await submit(page, confirm);
      check((await page.locator('main .error').count()) === 0, `the TOTP code was refused: ${await mainText(page)}`);
      check(/\bon\b|enabled|turned on/i.test(await section.innerText()), `/account does not say TOTP is on: ${await mainText(page)}`);
      check((await section.locator(codeField).count()) === 0, `/account still asks for a TOTP code after enrolment`);
      await screenshot(page, 'account-totp-on');
      await page.close();

      // A new browser: the password alone no longer signs in; a wrong code is refused.
      const context = await newContext('admin with TOTP');
      const fresh = await context.newPage();
      await fresh.goto(`${base}/login?next=%2F`);
      const form = fresh.locator('form:has(input[name=password])');
      await form.locator('input[name=username]').fill(fixture.admin.name);
      await form.locator('input[name=password]').fill(fixture.admin.password);
      const wrong = totpAt(secret, step() - 20);
      await submit(fresh, form);
      check(new URL(fresh.url()).pathname === '/login', `the password alone signed in after TOTP enrolment: ${fresh.url()}`);
      const second = fresh.locator('form:has(input[name=totp])');
      check((await second.count()) > 0, `no TOTP question after the password: ${await mainText(fresh)}`);
      await answerTotp(fresh, second, fixture.admin, wrong);
      check(new URL(fresh.url()).pathname === '/login', `a wrong TOTP code signed in: ${fresh.url()}`);
      check((await fresh.locator('main .error').count()) > 0, `a wrong TOTP code is refused without saying so: ${await mainText(fresh)}`);
      await screenshot(fresh, 'login-totp');

      await signIn(fresh, fixture.admin, { secret, next: '/', expectTotp: true });
      await fresh.close();
      // From here on the admin is the one signed in with password and code.
      await state.admin.close();
      state.admin = context;
      state.adminSecret = secret;
    },
  },
  {
    name: 'the overview renders with its charts, also at phone width',
    needs: ['admin'],
    async run() {
      const page = await state.admin.newPage();
      await page.goto(`${base}/`);
      check(pathOf(page) === '/', `/ ended at ${page.url()}`);
      await page.waitForLoadState('networkidle');
      // Every chart with data to show is drawn (uPlot draws on a canvas).
      const charts = await page.locator('div.chart[data-source]').evaluateAll((els) =>
        els.map((el) => {
          const data = JSON.parse(document.getElementById(el.getAttribute('data-source'))?.textContent ?? '{}');
          return { id: el.getAttribute('data-source'), points: data.x?.length ?? 0, drawn: el.querySelector('canvas') !== null };
        }),
      );
      check(charts.length > 0, 'the overview has no charts');
      const blank = charts.filter((c) => c.points > 0 && !c.drawn).map((c) => c.id);
      check(blank.length === 0, `charts with data left blank: ${blank.join(', ')}`);
      await screenshot(page, 'overview');
      await assertInert(page, '/');
      await page.setViewportSize({ width: 360, height: 740 });
      await page.reload();
      await page.waitForLoadState('networkidle');
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      await screenshot(page, 'overview-phone');
      check(overflow <= 0, `at 360 px the overview scrolls sideways by ${overflow} px`);
      await page.close();
    },
  },
  {
    name: 'every page of the navigation renders cleanly',
    needs: ['admin'],
    async run() {
      const page = await state.admin.newPage();
      await page.goto(`${base}/`);
      const hrefs = await page.locator('header nav a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
      check(hrefs.length > 1, `the navigation has ${hrefs.length} links`);
      for (const href of hrefs) {
        const response = await page.goto(new URL(href, base).href);
        check(response.status() === 200, `${href} answers ${response.status()}`);
        check(new URL(page.url()).pathname === href, `${href} ended at ${page.url()}`);
        const current = await page.locator('header nav a[aria-current=page]').getAttribute('href').catch(() => null);
        check(current === href, `on ${href} the navigation marks ${current} as current`);
        check((await page.locator('h1').count()) === 1, `${href} has ${await page.locator('h1').count()} h1 headings`);
        await assertInert(page, href);
        await screenshot(page, `nav${href === '/' ? '-overview' : href.replace(/\//g, '-')}`);
      }
      await page.close();
    },
  },
  {
    name: 'the search form is reachable by keyboard alone',
    needs: ['admin'],
    async run() {
      const page = await state.admin.newPage();
      await page.goto(`${base}/search`);
      const form = searchForm(page);
      check((await form.count()) === 1, `/search has ${await form.count()} search forms`);
      const wanted = await form.evaluate((f) =>
        [...f.elements]
          .filter((e) => e.type !== 'hidden' && !e.disabled && e.offsetParent !== null)
          .map((e) => `${e.tagName.toLowerCase()}:${e.name || e.type}`),
      );
      check(wanted.some((w) => w.startsWith('button') || w.endsWith('submit')), `the search form has no submit button: ${wanted}`);
      const reached = new Set();
      for (let i = 0; i < 80 && reached.size < wanted.length; i++) {
        await page.keyboard.press('Tab');
        const active = await page.evaluate(() => {
          const e = document.activeElement;
          return e && e.form && e.form.getAttribute('action') !== '/logout' ? `${e.tagName.toLowerCase()}:${e.name || e.type}` : null;
        });
        if (active && wanted.includes(active)) reached.add(active);
      }
      const missed = wanted.filter((w) => !reached.has(w));
      check(missed.length === 0, `Tab never reaches ${missed.join(', ')} of the search form`);
      // Every field is labelled.
      const unlabelled = await form.evaluate((f) =>
        [...f.elements]
          .filter((e) => e.type !== 'hidden' && e.type !== 'submit' && e.tagName !== 'BUTTON')
          .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
          .map((e) => e.name),
      );
      check(unlabelled.length === 0, `search fields without a label: ${unlabelled.join(', ')}`);
      await page.close();
    },
  },
  {
    name: 'a search gives a link that shows the same results later',
    needs: ['admin'],
    async run() {
      const page = await state.admin.newPage();
      await page.goto(`${base}/search`);
      const form = searchForm(page);
      const logField = form.locator('[name=log]');
      if ((await logField.count()) > 0 && (await logField.isVisible())) {
        if ((await logField.evaluate((e) => e.tagName)) === 'SELECT') await logField.selectOption(log);
        else await logField.fill(log);
      }
      await form.locator('[name=text]').fill(fixture.search.text);
      const since = form.locator('[name=since]');
      if ((await since.count()) > 0 && (await since.isVisible())) {
        if ((await since.evaluate((e) => e.tagName)) === 'SELECT') {
          const options = await since.locator('option').evaluateAll((os) => os.map((o) => o.value));
          const choice = options.find((v) => /^(1h|24h|1d|7d)$/.test(v));
          if (choice) await since.selectOption(choice);
        } else {
          await since.fill('24h');
        }
      }
      await submitSearch(page, form);
      const shown = await resultIndices(page);
      const expected = [...fixture.search.indices].sort((a, b) => a - b);
      check(same(shown, expected), `search for ${fixture.search.text} shows events ${shown}, expected ${expected}`);
      await screenshot(page, 'search');
      state.searchUrl = page.url();
      const link = await deepLink(page);
      check(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(decodeURIComponent(link)), `the search's link carries no absolute time: ${link}`);
      state.deepLink = link;

      // An event sent after the search falls outside the link's range.
      await sleep(1100);
      const late = await ingest({ action: 'invoice.paid', actor: { id: 'alice' }, message: `quartz invoice late ${Date.now()}` });
      await waitSearchable(late.index);
      const fresh = await state.admin.newPage();
      await fresh.goto(new URL(link, base).href);
      const again = await resultIndices(fresh);
      check(same(again, expected), `the link ${link} shows ${again} later, not ${expected}`);
      await screenshot(fresh, 'search-link');
      await fresh.close();
      await page.close();
    },
  },
  {
    name: 'search results export as CSV and XLSX',
    needs: ['admin'],
    async run() {
      const page = await state.admin.newPage();
      await page.goto(state.deepLink ? new URL(state.deepLink, base).href : `${base}/search?log=${log}&text=${fixture.search.text}`);
      const csv = page.locator('a[href*="format=csv"]');
      check((await csv.count()) > 0, `no CSV export link on ${page.url()}`);
      const [download] = await Promise.all([page.waitForEvent('download'), csv.first().click()]);
      const file = await download.path();
      const text = fs.readFileSync(file, 'utf8');
      const lines = text.split(/\r?\n/).filter((l) => l.length > 0);
      // docs/export-formats.md: the columns, in this order.
      check(lines[0]?.startsWith('index,id,occurred_at,received_at,tenant,action,'), `the CSV header row is ${JSON.stringify(lines[0])}`);
      const exported = lines.slice(1).map((l) => Number(l.split(',')[0])).sort((a, b) => a - b);
      const expected = [...fixture.search.indices].sort((a, b) => a - b);
      check(same(exported, expected), `the CSV holds events ${exported}, expected ${expected}`);
      const xlsx = page.locator('a[href*="format=xlsx"]');
      check((await xlsx.count()) > 0, `no XLSX export link on ${page.url()}`);
      const [book] = await Promise.all([page.waitForEvent('download'), xlsx.first().click()]);
      const bytes = fs.readFileSync(await book.path());
      check(bytes.length > 100 && bytes.subarray(0, 2).toString() === 'PK', `the XLSX export is not a workbook (${bytes.length} bytes)`);
      await page.close();
    },
  },
  {
    name: 'the live stream shows an event sent while it is open',
    needs: ['admin'],
    async run() {
      const page = await state.admin.newPage();
      await page.goto(`${base}/stream`);
      check(pathOf(page).startsWith('/stream'), `/stream ended at ${page.url()}`);
      // The page says so once its event stream is open.
      const status = page.locator('[role=status]', { hasText: /live|connected/i });
      await status.first().waitFor({ timeout: 10_000 }).catch(async () => fail(`/stream never says it is live: ${await mainText(page)}`));
      const marker = `stream probe ${crypto.randomUUID()}`;
      const hostile = `<img src=x onerror=alert('live')> ${marker}`;
      await ingest({ action: 'stream.probe', actor: { id: 'prober', name: "<script>alert('live actor')</script>" }, message: hostile });
      await page.getByText(marker).first().waitFor({ timeout: 10_000 });
      await sleep(200);
      await assertInert(page, '/stream');
      await screenshot(page, 'stream');
      await page.close();
    },
  },
  {
    name: 'an event with hostile text shows it inert, with its proof verified',
    needs: ['admin'],
    async run() {
      const page = await state.admin.newPage();
      const where = `/events/${log}/${fixture.hostile.index}`;
      await page.goto(base + where);
      check(pathOf(page) === where, `${where} ended at ${page.url()}`);
      const text = await page.locator('main').evaluate((m) => m.textContent);
      for (const shown of [fixture.hostile.actor_name, fixture.hostile.message]) {
        check(text.includes(shown), `${where} does not show ${JSON.stringify(shown)} as text`);
      }
      await assertInert(page, where);
      const proof = page.locator('main p', { hasText: /verified/i });
      await proof.first().waitFor({ timeout: 10_000 });
      const proofText = (await proof.first().innerText()).toLowerCase();
      check(!/not verified|failed|mismatch/.test(proofText), `the proof reads ${JSON.stringify(proofText)}`);
      await screenshot(page, 'event');
      await page.close();
    },
  },
  {
    name: 'the entity timeline of a hostile target shows it inert',
    needs: ['admin'],
    async run() {
      const page = await state.admin.newPage();
      const { type, id } = fixture.hostile.target;
      await page.goto(`${base}/entities/${encodeURIComponent(type)}/${encodeURIComponent(id)}?log=${log}`);
      check(new URL(page.url()).pathname.startsWith('/entities/'), `the entity page ended at ${page.url()}`);
      const text = await page.locator('main').innerText();
      check(text.includes(id), `the entity page does not show ${JSON.stringify(id)} as text`);
      await assertInert(page, 'entity page');
      const links = await page.locator(`main a[href*="/events/${log}/${fixture.hostile.index}"]`).count();
      check(links > 0, `the entity timeline does not link to event ${fixture.hostile.index}`);
      await screenshot(page, 'entity');
      await page.close();
    },
  },
  {
    name: 'an admin creates, runs, disables, enables and deletes a job',
    needs: ['admin'],
    async run() {
      const page = await state.admin.newPage();
      const name = `browser-verify-${Date.now()}`;
      await page.goto(`${base}/jobs`);
      const form = page.locator('main form[action="/jobs"]');
      check((await form.count()) === 1, `/jobs offers the admin ${await form.count()} job forms`);
      const area = form.locator('textarea[name=definition]');
      const id = await area.getAttribute('id');
      check(id && (await page.locator(`label[for="${id}"]`).count()) === 1, 'the definition field has no label');
      await screenshot(page, 'jobs');
      // A refused definition: the problem names the field, the text stays.
      const bad = `name = "${name}"\ntype = "verify"\nlog = "${log}"\nschedule = "0 2 * * *"\ntimezone = "Nowhere/City"\n`;
      await area.fill(bad);
      await submit(page, form);
      const alert = page.locator('main [role=alert]');
      check((await alert.count()) === 1, `a refused job shows no alert: ${await mainText(page)}`);
      const said = await alert.innerText();
      check(said.includes('timezone: unknown time zone'), `the refusal does not name the field: ${said}`);
      check((await page.locator('main textarea[name=definition]').inputValue()) === bad, 'the refused text was not kept');
      await screenshot(page, 'jobs-refused');
      // Saved, then run now, disabled, enabled.
      await page.locator('main textarea[name=definition]').fill(bad.replace('Nowhere/City', 'UTC'));
      await submit(page, page.locator('main form[action="/jobs"]'));
      check(pathOf(page) === `/jobs/${name}`, `saving the job led to ${page.url()}: ${await mainText(page)}`);
      const action = (a) => page.locator(`main form[action="/jobs/${name}/${a}"]`);
      await submit(page, action('run'));
      await page.locator('main dd', { hasText: /run requested|running|enabled/ }).first().waitFor();
      await submit(page, action('disable'));
      check(/disabled/.test(await mainText(page)), `after Disable the job reads: ${await mainText(page)}`);
      check((await action('enable').count()) === 1, 'a disabled job offers no Enable');
      await submit(page, action('enable'));
      check((await action('disable').count()) === 1, 'an enabled job offers no Disable');
      await assertInert(page, `/jobs/${name}`);
      await screenshot(page, 'job');
      // Delete wants its box ticked; the box is reached and ticked by keyboard.
      const box = action('delete').locator('input[name=confirm]');
      await box.focus();
      await page.keyboard.press('Space');
      check(await box.isChecked(), 'Space does not tick the delete box');
      await submit(page, action('delete'));
      check(pathOf(page) === '/jobs', `deleting the job led to ${page.url()}`);
      check((await page.locator(`main a[href="/jobs/${name}"]`).count()) === 0, 'the deleted job is still listed');
      await page.close();
    },
  },
  {
    name: 'reports download from the reports page, by keyboard',
    needs: ['admin'],
    async run() {
      const page = await state.admin.newPage();
      await page.goto(`${base}/reports`);
      const form = page.locator('main form[action="/reports/download"]');
      check((await form.count()) === 1, `/reports has ${await form.count()} report forms`);
      const fields = await form.evaluate((f) =>
        [...f.elements].filter((e) => e.type !== 'hidden').map((e) => ({ key: `${e.tagName.toLowerCase()}:${e.name || e.type}`, labelled: !!(e.labels && e.labels.length) || e.tagName === 'BUTTON' })),
      );
      const unlabelled = fields.filter((f) => !f.labelled).map((f) => f.key);
      check(unlabelled.length === 0, `report fields without a label: ${unlabelled.join(', ')}`);
      const reached = new Set();
      for (let i = 0; i < 60 && reached.size < fields.length; i++) {
        await page.keyboard.press('Tab');
        const active = await page.evaluate(() => {
          const e = document.activeElement;
          return e && e.form && e.form.getAttribute('action') === '/reports/download' ? `${e.tagName.toLowerCase()}:${e.name || e.type}` : null;
        });
        if (active) reached.add(active);
      }
      const missed = fields.map((f) => f.key).filter((k) => !reached.has(k));
      check(missed.length === 0, `Tab never reaches ${missed.join(', ')} of the report form`);
      await screenshot(page, 'reports');
      // JSON: the summary of the log, counted as the API counts.
      await form.locator('[name=log]').selectOption(log);
      await form.locator('[name=type]').selectOption('summary');
      await form.locator('[name=format]').selectOption('json');
      const [json] = await Promise.all([page.waitForEvent('download'), form.locator('button[type=submit]').press('Enter')]);
      check(/^sealtrail-summary-.+\.json$/.test(json.suggestedFilename()), `the JSON report is named ${json.suggestedFilename()}`);
      const report = JSON.parse(fs.readFileSync(await json.path(), 'utf8'));
      const stats = await (await fetch(`${base}/api/v1/logs/${log}/stats`, { headers: { authorization: `Bearer ${fixture.read_key}` } })).json();
      check(report.report === 'summary' && report.log === log, `the report is ${report.report} of ${report.log}`);
      check(report.total === stats.total, `the report counts ${report.total} events, the API ${stats.total}`);
      // HTML, self-contained.
      await form.locator('[name=format]').selectOption('html');
      const [html] = await Promise.all([page.waitForEvent('download'), form.locator('button[type=submit]').click()]);
      const text = fs.readFileSync(await html.path(), 'utf8');
      check(text.startsWith('<!DOCTYPE html>') && !text.includes('<script'), 'the HTML report is not one self-contained page');
      // A refusal comes back on the form, naming the field.
      await form.locator('[name=since]').fill('soon');
      await submit(page, form);
      const alert = page.locator('main [role=alert]');
      check((await alert.count()) === 1 && (await alert.innerText()).includes('since:'), `a bad since shows: ${await mainText(page)}`);
      check((await page.locator('main [name=since]').inputValue()) === 'soon', 'the refused since was not kept');
      await assertInert(page, '/reports/download');
      await screenshot(page, 'reports-refused');
      await page.close();
    },
  },
  {
    name: 'a viewer signs in with a password and is not offered administration',
    async run() {
      const context = await newContext('viewer');
      const page = await context.newPage();
      await signIn(page, fixture.viewer, { next: '/search', expectTotp: false });
      check((await page.locator('nav a[href="/users"]').count()) === 0, 'a viewer is offered the users page');
      const users = await page.goto(`${base}/users`);
      check([403, 404].includes(users.status()) || new URL(page.url()).pathname !== '/users', `a viewer gets ${users.status()} from /users`);
      // Jobs are shown without a single form to change them; reports are offered.
      const jobs = await page.goto(`${base}/jobs`);
      check(jobs.status() === 200, `a viewer gets ${jobs.status()} from /jobs`);
      check((await page.locator('main form[method=post]').count()) === 0, 'a viewer is offered job changes');
      check((await page.locator('nav a[href="/reports"]').count()) === 1, 'a viewer is not offered reports');
      await page.goto(`${base}/reports`);
      check((await page.locator('main option[value="access-review"]').count()) === 0, 'a viewer is offered the access review');
      await screenshot(page, 'viewer-reports');
      await context.close();
    },
  },
  {
    name: 'the live stream pauses while the tab is hidden and resumes without gaps or duplicates',
    needs: ['admin'],
    async run() {
      const page = await state.admin.newPage();
      // Only this flow's events: other flows ingest meanwhile.
      const actor = `hider-${crypto.randomUUID()}`;
      await page.goto(`${base}/stream?log=${log}&actor=${encodeURIComponent(actor)}`);
      const status = page.locator('#stream-status');
      await page.locator('#stream-status', { hasText: /live/i }).waitFor({ timeout: 10_000 })
        .catch(async () => fail(`/stream never says it is live: ${await mainText(page)}`));
      const shown = () => page.locator('#stream-rows tr td:first-child a').evaluateAll((as) => as.map((a) => Number(a.textContent)));
      const waitShown = async (count, what) => {
        const until = Date.now() + 10_000;
        while (Date.now() < until) {
          if ((await shown()).length >= count) return;
          await sleep(50);
        }
        fail(`${what}: the stream shows ${await shown()} after 10 s`);
      };
      const send = async (message) => (await ingest({ action: 'stream.visibility', actor: { id: actor }, message })).index;
      const setHidden = (hidden) => page.evaluate((h) => {
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => h });
        Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (h ? 'hidden' : 'visible') });
        document.dispatchEvent(new Event('visibilitychange'));
      }, hidden);

      const sent = [await send('before hiding')];
      await waitShown(1, 'the first event');
      await setHidden(true);
      check(/paused/i.test(await status.innerText()), `hidden, the stream says ${JSON.stringify(await status.innerText())}`);
      for (let i = 0; i < 3; i++) sent.push(await send(`while hidden ${i}`));
      // The server has these at once; a paused page must not show them.
      await sleep(1500);
      const whileHidden = await shown();
      check(same(whileHidden, sent.slice(0, 1)), `while hidden the stream went on: it shows ${whileHidden}`);
      await screenshot(page, 'stream-paused');

      await setHidden(false);
      await waitShown(4, 'the events sent while hidden');
      sent.push(await send('after showing'));
      await waitShown(5, 'the event sent after showing');
      await sleep(500);
      const rows = await shown();
      const expected = [...sent].sort((a, b) => b - a);
      check(same(rows, expected), `after showing again the stream shows ${rows} (newest first), expected each of ${expected} once`);
      check(/live/i.test(await status.innerText()), `shown again, the stream says ${JSON.stringify(await status.innerText())}`);
      await page.close();
    },
  },
  {
    name: 'times switch between UTC and the browser\'s zone, and the choice is remembered',
    async run() {
      // A zone with a half-hour offset and no daylight saving: +05:30 all year.
      const context = await newContext('viewer in Kolkata', { timezoneId: 'Asia/Kolkata' });
      const page = await context.newPage();
      await signIn(page, fixture.viewer, { next: '/', expectTotp: false });
      const label = page.locator('main [data-tz-name]').first();
      const toggle = page.locator('main button[data-tz-toggle]').first();
      const times = () => page.locator('main time[datetime]').evaluateAll((ts) => ts.map((t) => [t.getAttribute('datetime'), t.textContent]));
      // The shown form of instant `iso` at `offsetMinutes` east of UTC, computed here.
      const at = (iso, offsetMinutes) => new Date(Date.parse(iso) + offsetMinutes * 60_000).toISOString().replace('T', ' ').replace('Z', '');
      const checkTimes = async (offsetMinutes, zoneName) => {
        const shownTimes = await times();
        check(shownTimes.length > 0, `the overview shows no times: ${await mainText(page)}`);
        for (const [iso, text] of shownTimes) {
          const want = at(iso, offsetMinutes);
          check(text === want, `in ${zoneName} the time ${iso} shows as ${JSON.stringify(text)}, expected ${JSON.stringify(want)}`);
        }
      };

      check((await label.innerText()) === 'UTC', `the zone label first reads ${JSON.stringify(await label.innerText())}`);
      check((await toggle.isVisible()) && (await toggle.getAttribute('aria-pressed')) === 'false', 'the zone toggle is not offered, unpressed');
      await checkTimes(0, 'UTC');

      await toggle.click();
      const local = await label.innerText();
      // The page names the zone as the browser resolves it (Chromium's ICU
      // still says Asia/Calcutta for Asia/Kolkata), so ask the browser.
      const resolved = await page.evaluate(() => Intl.DateTimeFormat().resolvedOptions().timeZone);
      check(['Asia/Kolkata', 'Asia/Calcutta'].includes(resolved), `the browser resolves its zone as ${JSON.stringify(resolved)}`);
      check(local.includes(resolved) && local.includes('+05:30'), `the local zone label reads ${JSON.stringify(local)}`);
      check((await toggle.getAttribute('aria-pressed')) === 'true', 'the zone toggle is not pressed after switching');
      await checkTimes(330, 'Asia/Kolkata');
      await screenshot(page, 'overview-local-time');

      await page.reload();
      check((await label.innerText()) === local, `after a reload the zone label reads ${JSON.stringify(await label.innerText())}`);
      await checkTimes(330, 'Asia/Kolkata after a reload');

      await toggle.click();
      check((await label.innerText()) === 'UTC', `switched back, the zone label reads ${JSON.stringify(await label.innerText())}`);
      await checkTimes(0, 'UTC again');
      await context.close();
    },
  },
  {
    name: 'signing out ends the session',
    needs: ['admin'],
    async run() {
      const page = await state.admin.newPage();
      await page.goto(`${base}/`);
      await signOut(page);
      await page.goto(`${base}/search`);
      check(new URL(page.url()).pathname === '/login', `after signing out /search shows ${page.url()}`);
      await screenshot(page, 'signed-out');
      await page.close();
    },
  },
];

/** Submit the search form: htmx swaps the results in place (and pushes
 *  the URL); without script it is an ordinary navigation. */
async function submitSearch(page, form) {
  await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/search' && r.request().method() === 'GET'),
    form.locator('button[type=submit]').click(),
  ]);
  await page.waitForLoadState('load');
  await page.waitForFunction(() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling'));
}

function searchForm(page) {
  return page.locator('main form:has([name=text])');
}

/** The ledger indices of the events a results page links to, sorted. */
async function resultIndices(page) {
  const hrefs = await page.locator(`main a[href^="/events/${log}/"]`).evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  const indices = new Set(hrefs.map((h) => Number(h.split('/')[3].split(/[?#]/)[0])));
  return [...indices].sort((a, b) => a - b);
}

/** The shareable link of a results page: a link marked as such, or the
 *  page's own address when it already carries absolute times. */
async function deepLink(page) {
  const marked = page.locator('main a[rel~=bookmark], main a', { hasText: /link to|permalink|share|this search/i });
  if ((await marked.count()) > 0) return await marked.first().getAttribute('href');
  return pathOf(page);
}

function same(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function signOut(page) {
  const button = page.locator('form[action="/logout"] button, form[action="/logout"] input[type=submit]');
  check((await button.count()) > 0, `no sign-out button on ${page.url()}`);
  await Promise.all([page.waitForNavigation(), button.first().click()]);
  check(new URL(page.url()).pathname === '/login', `signing out led to ${page.url()}`);
}

async function ingest(event) {
  const r = await fetch(`${base}/api/v1/logs/${log}/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${fixture.ingest_key}`, 'content-type': 'application/json' },
    body: JSON.stringify(event),
  });
  const body = await r.json();
  check(r.status === 201, `ingest answered ${r.status}: ${JSON.stringify(body)}`);
  return body;
}

async function waitSearchable(index) {
  const until = Date.now() + 10_000;
  while (Date.now() < until) {
    const r = await fetch(`${base}/api/v1/logs/${log}/events?limit=1`, { headers: { authorization: `Bearer ${fixture.read_key}` } });
    if (r.status === 200 && (await r.json()).events?.[0]?.index >= index) return;
    await sleep(50);
  }
}

// ---------------------------------------------------------------- main

browser = await chromium.launch({
  executablePath: fixture.chromium,
  headless: true,
  // Chromium's own background traffic would only be refused here.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let passed = 0;
let failed = 0;
const failedFlows = new Set();
for (const flow of flows) {
  const started = Date.now();
  const before = problems.length;
  const missing = (flow.needs ?? []).filter((n) => !state[n]);
  try {
    if (missing.length) fail(`not run: it needs the signed-in ${missing.join(', ')} of an earlier flow`);
    await flow.run();
    await sleep(50);
    const seen = problems.slice(before);
    if (seen.length) fail(seen.join('\n    '));
    passed++;
    console.log(`ok   ${flow.name} (${Date.now() - started} ms)`);
  } catch (e) {
    failed++;
    failedFlows.add(flow.name);
    // What the browser reported says more than the step that gave up.
    const seen = problems.slice(before).filter((p) => !String(e.message).includes(p));
    const detail = [String(e.message ?? e), ...seen].join('\n');
    console.log(`FAIL ${flow.name} (${Date.now() - started} ms)\n    ${detail.split('\n').join('\n    ')}`);
  }
}
await browser.close();
console.log(`screenshots in ${shots}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
