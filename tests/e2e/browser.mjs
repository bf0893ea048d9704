#!/usr/bin/env node
// vishnu end-to-end test in a real browser: headless Chromium (Debian's /usr/bin/chromium),
// driven by playwright-core, against the Rust demo (crates/vishnu/examples/demo.rs, on axum);
// the main scenarios also against the same demo on actix-web (examples/demo_actix.rs).
//
// Run `node tests/e2e/browser.mjs --help` for usage. Prints one line per check and a
// final `e2e-browser: N passed, M failed`; exits non-zero when a check fails.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');

const USAGE = `usage: node tests/e2e/browser.mjs [--help] [--keep-logs]

Starts the vishnu demo (several times, on free 127.0.0.1 ports, memory store) and drives it
with headless Chromium. The scenarios marked [both] run against the axum demo and the
actix-web one (demo_actix), the others against the axum demo:
  - [both] the counter goes up across reloads of /counter, and / shows it;
  - [both] login through the form on / shows the user; logout removes the cookie, /whoami is
    then 401; document.cookie does not show the HttpOnly session cookie;
  - with --timeout 2 the session is gone after 3 idle seconds (also for a replayed cookie);
  - [both] logging in does not log the user out: 5 rounds (fresh contexts) of 20 concurrent
    GET /counter fetches with the login POST in their middle; each answers 200 or 409, the user
    is logged in afterwards with the cookie the login set, and no increment is lost or doubled;
  - [both] with --renew-every 1 --grace 5, 30 concurrent GET /counter fetches that renew the id all
    answer 200, the final count is exact (32) and the cookie changed (3 rounds);
  - [both] over HTTPS (self-signed certificate made with openssl): a Secure cookie named __Host-vishnu,
    counter, login and logout;
  - SameSite=Strict: an auto-submitting form on http://127.0.0.1:PORT POSTing to the demo's
    /logout on http://localhost:PORT (a different site) does not carry the cookie and leaves the
    victim logged in; control: with SameSite=None (over HTTPS) the same page does log out;
  - Partitioned (CHIPS): without TLS the demo refuses --partitioned (exit 2); with
    --partitioned --same-site none over HTTPS: first-party on https://localhost
    the counter goes up, Set-Cookie says Partitioned, the stored cookie has a partitionKey, and
    logout (a Partitioned removal) deletes it; third-party: a page on https://127.0.0.1 embeds
    the demo's /counter in an iframe, which counts 1, 2 in its own partition, while a top-level
    visit starts at 1 (not sent the iframe's cookie); control: without --partitioned the
    browser keeps no third-party cookie (the iframe stays at 1).

Environment:
  VISHNU_DEMO_BIN   the demo binary (default target/debug/examples/demo; build it with
                    'cargo build --example demo --all-features')
  VISHNU_DEMO_ACTIX_BIN
                    the actix-web demo (default target/debug/examples/demo_actix; build it
                    with 'cargo build --example demo_actix --all-features')
  CHROMIUM          the browser (default /usr/bin/chromium; scripts/e2e/install-browser.sh
                    installs it from Debian when run as root)

playwright-core is installed with npm into tests/e2e/node_modules on first use (npm ci, from
tests/e2e/package-lock.json); it never downloads a browser of its own.
--keep-logs keeps the temporary directory with the demo logs.`;

const argv = process.argv.slice(2);
if (argv.includes('-h') || argv.includes('--help')) {
  console.log(USAGE);
  process.exit(0);
}
for (const a of argv) {
  if (a !== '--keep-logs') {
    console.error(`browser.mjs: unknown argument ${JSON.stringify(a)} (try --help)`);
    process.exit(2);
  }
}
const keepLogs = argv.includes('--keep-logs');

let passed = 0;
let failed = 0;
function die(msg) {
  console.error(`browser.mjs: ${msg}`);
  console.log(`e2e-browser: ${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}

// ---------------------------------------------------------------- prerequisites

const demoBin = path.resolve(ROOT, process.env.VISHNU_DEMO_BIN || 'target/debug/examples/demo');
if (!fs.existsSync(demoBin)) {
  die(`the demo binary ${demoBin} is missing: build it with 'cargo build --example demo --all-features' (or set VISHNU_DEMO_BIN)`);
}
const actixBin = path.resolve(ROOT, process.env.VISHNU_DEMO_ACTIX_BIN || 'target/debug/examples/demo_actix');
if (!fs.existsSync(actixBin)) {
  die(`the actix-web demo binary ${actixBin} is missing: build it with 'cargo build --example demo_actix --all-features' (or set VISHNU_DEMO_ACTIX_BIN)`);
}
// The fronts the [both] scenarios run against: one engine, two web frameworks.
const FRONTS = [
  { name: 'axum', bin: demoBin },
  { name: 'actix-web', bin: actixBin },
];
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!fs.existsSync(chromiumPath)) {
  if (process.env.CHROMIUM) die(`CHROMIUM=${chromiumPath} does not exist`);
  const r = spawnSync('bash', [path.join(ROOT, 'scripts/e2e/install-browser.sh')], { stdio: 'inherit' });
  if (r.status !== 0 || !fs.existsSync(chromiumPath)) {
    die(`${chromiumPath} is missing and scripts/e2e/install-browser.sh could not install it (see above)`);
  }
}
if (spawnSync('openssl', ['version']).status !== 0) {
  die("openssl is missing (needed for the self-signed certificate): apt-get install -y openssl");
}
const pwEntry = path.join(HERE, 'node_modules', 'playwright-core', 'index.mjs');
if (!fs.existsSync(pwEntry)) {
  console.error('browser.mjs: installing playwright-core into tests/e2e/node_modules (npm ci)');
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund', '--silent'], {
    cwd: HERE,
    stdio: 'inherit',
    env: { ...process.env, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: '1' },
  });
  if (r.error || r.status !== 0 || !fs.existsSync(pwEntry)) {
    die(`could not install playwright-core with npm in ${HERE} (is npm installed? apt-get install -y npm)`);
  }
}
const { chromium } = await import(pathToFileURL(pwEntry).href);

// ---------------------------------------------------------------- bookkeeping

function check(name, ok, detail) {
  if (ok) {
    passed += 1;
    console.log(`ok    ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL  ${name}${detail === undefined ? '' : `  (${typeof detail === 'string' ? detail : JSON.stringify(detail)})`}`);
  }
  return ok;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vishnu-e2e-browser-'));
const children = new Set(); // demo processes we started: stopped by PID
const servers = new Set(); // in-process http servers
const browsers = new Set();

function cleanupSync() {
  for (const child of children) {
    try {
      process.kill(child.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  children.clear();
  if (!keepLogs) fs.rmSync(tmp, { recursive: true, force: true });
}
process.on('exit', cleanupSync);
process.on('unhandledRejection', (e) => {
  console.error(`browser.mjs: ${e && e.stack ? e.stack : e}`);
  console.log(`e2e-browser: ${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.error(`browser.mjs: ${sig}: stopping what was started`);
    for (const b of browsers) b.close().catch(() => {});
    process.exit(130);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// One GET outside the browser, for readiness probes.
function probe(url) {
  return new Promise((resolve) => {
    const mod = url.startsWith('https:') ? https : http;
    const req = mod.get(url, { timeout: 1000, rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

// Starts a demo (`bin`) with extra flags on a free port; resolves once GET /public answers.
async function startDemo(label, flags, scheme = 'http', bin = demoBin) {
  const port = await freePort();
  const logPath = path.join(tmp, `demo-${label}.log`);
  const log = fs.openSync(logPath, 'w');
  const child = spawn(bin, ['--port', String(port), '--store', 'memory', ...flags], {
    stdio: ['ignore', log, log],
    env: { ...process.env, NO_COLOR: '1' },
  });
  fs.closeSync(log);
  children.add(child);
  let exited = null;
  child.on('exit', (code, signal) => {
    exited = { code, signal };
    children.delete(child);
  });
  for (let i = 0; i < 200; i++) {
    if (exited) break;
    if ((await probe(`${scheme}://127.0.0.1:${port}/public`)) === 200) {
      return { port, child, logPath, stop: () => stopDemo(child) };
    }
    await sleep(100);
  }
  const tail = fs.readFileSync(logPath, 'utf8').split('\n').slice(-15).join('\n');
  stopDemo(child);
  throw new Error(`${path.basename(bin)} (${flags.join(' ')}) did not answer on port ${port}${exited ? ` (exited: ${JSON.stringify(exited)})` : ''}; log:\n${tail}`);
}

async function stopDemo(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {
    return;
  }
  await Promise.race([gone, sleep(5000)]);
}

// The attacker's site: GET /?target=URL answers a page whose form POSTs to URL on load.
async function startAttacker() {
  const port = await freePort();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const target = url.searchParams.get('target') || '';
    const esc = target.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html><body><h1>You won a prize</h1>
<form id="f" method="post" action="${esc}"><input type="hidden" name="x" value="1"></form>
<script>document.getElementById('f').submit();</script></body></html>`);
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  servers.add(server);
  return { port, close: () => new Promise((r) => server.close(r)) };
}

const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// Playwright adds --headless and a fresh temporary --user-data-dir to every launch.
async function launch(extra = []) {
  const b = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [...CHROMIUM_FLAGS, ...extra],
    timeout: 60000,
  });
  browsers.add(b);
  return b;
}

async function closeBrowser(b) {
  browsers.delete(b);
  await b.close().catch(() => {});
}

async function bodyOf(response) {
  return (await response.text()).trim();
}

function sessionCookie(cookies, name) {
  return cookies.find((c) => c.name === name);
}

// Logs in through the form on `/` and waits for the page that follows the 303.
async function loginViaForm(page, base, user) {
  await page.goto(`${base}/`);
  await page.fill('input[name="user"]', user);
  const landed = page.waitForResponse((r) => r.url() === `${base}/` && r.request().method() === 'GET');
  const posted = page.waitForResponse((r) => r.url() === `${base}/login`);
  await page.click('button:has-text("Log in")');
  const [post] = await Promise.all([posted, landed]);
  await page.waitForLoadState('load');
  return post.status();
}

async function logoutViaForm(page, base) {
  await page.goto(`${base}/`);
  const landed = page.waitForResponse((r) => r.url() === `${base}/` && r.request().method() === 'GET');
  const posted = page.waitForResponse((r) => r.url() === `${base}/logout`);
  await page.click('#logout');
  const [post] = await Promise.all([posted, landed]);
  await page.waitForLoadState('load');
  return post.status();
}

async function section(name, fn) {
  console.log(`-- ${name}`);
  try {
    await fn();
  } catch (e) {
    check(`${name}: ran to the end`, false, String(e && e.stack ? e.stack : e).split('\n').slice(0, 6).join(' | '));
  }
}

// ---------------------------------------------------------------- the checks

const browser = await launch().catch((e) => die(`cannot launch ${chromiumPath}: ${e.message}`));

for (const front of FRONTS) {
  await section(`plain HTTP: counter, login, logout, HttpOnly [${front.name}]`, async () => {
    const demo = await startDemo(`plain-${front.name}`, [], 'http', front.bin);
    const base = `http://127.0.0.1:${demo.port}`;
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      let r = await page.goto(`${base}/counter`);
      const seen = [await bodyOf(r)];
      for (let i = 0; i < 2; i++) {
        r = await page.reload();
        seen.push(await bodyOf(r));
      }
      check('the counter goes up across reloads of /counter (1, 2, 3)', seen.join(',') === '1,2,3', seen);
      await page.goto(`${base}/`);
      check('/ shows the counter', (await page.textContent('#counter')) === '3', await page.textContent('#counter'));

      let cookies = await context.cookies();
      const before = sessionCookie(cookies, 'vishnu');
      check('the browser holds the session cookie, HttpOnly, SameSite=Lax, host-only',
        !!before && before.httpOnly && before.sameSite === 'Lax' && before.domain === '127.0.0.1' && before.path === '/', cookies);
      const jsCookies = await page.evaluate(() => {
        document.cookie = 'probe=visible; path=/';
        return document.cookie;
      });
      check('document.cookie shows a script cookie but not the HttpOnly session cookie',
        jsCookies.includes('probe=visible') && !jsCookies.includes('vishnu='), jsCookies);

      const status = await loginViaForm(page, base, 'ada');
      check('login through the form on / answers 303 and lands on /', status === 303, status);
      check('/ shows the logged-in user', (await page.textContent('#user')) === 'ada', await page.textContent('#user'));
      cookies = await context.cookies();
      const after = sessionCookie(cookies, 'vishnu');
      check('login cycles the session id (new cookie value)', !!after && !!before && after.value !== before.value);
      r = await page.goto(`${base}/whoami`);
      check('/whoami answers 200 with the user', r.status() === 200 && (await bodyOf(r)) === 'ada', [r.status(), await bodyOf(r)]);
      r = await page.goto(`${base}/counter`);
      check('the counter survives login (4)', (await bodyOf(r)) === '4', await bodyOf(r));

      const out = await logoutViaForm(page, base);
      check('logout through the form answers 303 and lands on /', out === 303, out);
      check('/ shows nobody logged in after logout', (await page.textContent('#user')) === 'Not logged in');
      cookies = await context.cookies();
      check('logout removes the session cookie from the browser', !sessionCookie(cookies, 'vishnu'), cookies.map((c) => c.name));
      r = await page.goto(`${base}/whoami`);
      check('/whoami answers 401 after logout', r.status() === 401, r.status());

      // The old logged-in cookie, replayed, is dead server-side too.
      const replay = await browser.newContext();
      await replay.addCookies([{ name: 'vishnu', value: after.value, domain: '127.0.0.1', path: '/', httpOnly: true, sameSite: 'Lax' }]);
      r = await (await replay.newPage()).goto(`${base}/whoami`);
      check('the logged-in cookie replayed after logout gets 401', r.status() === 401, r.status());
      await replay.close();
    } finally {
      await context.close();
      await demo.stop();
    }
  });
}

await section('idle timeout (--timeout 2)', async () => {
  const demo = await startDemo('timeout', ['--timeout', '2']);
  const base = `http://127.0.0.1:${demo.port}`;
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    let r = await page.goto(`${base}/counter`);
    r = await page.goto(`${base}/counter`);
    check('counter counts to 2', (await bodyOf(r)) === '2', await bodyOf(r));
    await loginViaForm(page, base, 'bob');
    r = await page.goto(`${base}/whoami`);
    check('logged in as bob', r.status() === 200 && (await bodyOf(r)) === 'bob', r.status());
    const cookie = sessionCookie(await context.cookies(), 'vishnu');
    const left = cookie ? cookie.expires - Date.now() / 1000 : -1;
    check('the cookie carries an expiry about 2 s ahead', !!cookie && left > 0 && left <= 3.5, { left });

    // Control: a copy of the cookie without the browser's expiry works while the session lives.
    const replay = await browser.newContext();
    await replay.addCookies([{ name: 'vishnu', value: cookie.value, domain: '127.0.0.1', path: '/', httpOnly: true, sameSite: 'Lax' }]);
    const replayPage = await replay.newPage();
    r = await replayPage.goto(`${base}/whoami`);
    check('a copy of the cookie (no client-side expiry) works before the timeout', r.status() === 200, r.status());

    await sleep(3200); // idle: no request at all
    r = await page.goto(`${base}/whoami`);
    check('after 3 idle seconds /whoami answers 401', r.status() === 401, r.status());
    r = await replayPage.goto(`${base}/whoami`);
    check('after 3 idle seconds the copied cookie is refused by the server too (401)', r.status() === 401, r.status());
    r = await page.goto(`${base}/counter`);
    check('after 3 idle seconds the counter restarts at 1', (await bodyOf(r)) === '1', await bodyOf(r));
    await replay.close();
  } finally {
    await context.close();
    await demo.stop();
  }
});

// Every response the page receives, with its Set-Cookie headers as the browser saw them (HttpOnly
// included: Playwright reads the raw headers over CDP). `done()` waits for the pending reads.
function recordResponses(page) {
  const pending = [];
  const listener = (r) => {
    pending.push(r.headersArray().then(
      (h) => ({
        path: new URL(r.url()).pathname,
        status: r.status(),
        setCookies: h.filter((x) => x.name.toLowerCase() === 'set-cookie').flatMap((x) => x.value.split('\n')),
      }),
      (e) => ({ path: new URL(r.url()).pathname, status: r.status(), setCookies: [], error: String(e) }),
    ));
  };
  page.on('response', listener);
  return {
    async done() {
      page.off('response', listener);
      return Promise.all(pending);
    },
  };
}

// A Set-Cookie for `name` that removes it: empty value, Max-Age <= 0 or an Expires in the past.
function isRemoval(setCookie, name) {
  if (!setCookie.startsWith(`${name}=`)) return false;
  const value = setCookie.slice(name.length + 1).split(';')[0];
  const maxAge = /;\s*max-age=(-?\d+)/i.exec(setCookie);
  const expires = /;\s*expires=([^;]+)/i.exec(setCookie);
  return value === '' || (maxAge && Number(maxAge[1]) <= 0) || (expires && Date.parse(expires[1]) < Date.now());
}

function setCookieValue(setCookie, name) {
  return setCookie.startsWith(`${name}=`) ? setCookie.slice(name.length + 1).split(';')[0] : null;
}

// In the page: GET /counter `count` times at once (no await between them), as fetch() does.
function counterBurst(page, count) {
  return page.evaluate(async (n) => {
    const one = () => fetch('/counter', { credentials: 'same-origin' }).then(async (r) => ({ status: r.status, body: (await r.text()).trim() }));
    return Promise.all(Array.from({ length: n }, one));
  }, count);
}

for (const front of FRONTS) {
  await section(`logging in does not log the user out (login in the middle of a /counter burst) [${front.name}]`, async () => {
    const demo = await startDemo(`login-burst-${front.name}`, [], 'http', front.bin);
    const base = `http://127.0.0.1:${demo.port}`;
    const ROUNDS = 5;
    const rounds = [];
    try {
      for (let round = 1; round <= ROUNDS; round++) {
        const context = await browser.newContext();
        const page = await context.newPage();
        try {
          // The session exists before the burst (count 1): a burst without one would start 20 sessions.
          const first = await page.goto(`${base}/counter`);
          const setup = await bodyOf(first);
          const pre = sessionCookie(await context.cookies(), 'vishnu');
          const rec = recordResponses(page);
          // 10 counter fetches, the login, 10 more: all in flight together, awaited at the end.
          const burst = await page.evaluate(async () => {
            const counter = () => fetch('/counter', { credentials: 'same-origin' })
              .then(async (r) => ({ status: r.status, body: (await r.text()).trim() }));
            const counters = [];
            for (let i = 0; i < 10; i++) counters.push(counter());
            const login = fetch('/login', {
              method: 'POST',
              body: new URLSearchParams({ user: 'ada' }),
              credentials: 'same-origin',
              redirect: 'manual',
            }).then((r) => ({ type: r.type, status: r.status }));
            for (let i = 0; i < 10; i++) counters.push(counter());
            return { counters: await Promise.all(counters), login: await login };
          });
          const seen = await rec.done();
          const who = await page.evaluate(async () => {
            const r = await fetch('/whoami', { credentials: 'same-origin' });
            return { status: r.status, body: (await r.text()).trim() };
          });
          const post = sessionCookie(await context.cookies(), 'vishnu');
          const [final] = await counterBurst(page, 1);
          const loginSeen = seen.filter((s) => s.path === '/login');
          const loginIds = loginSeen.flatMap((s) => s.setCookies).map((c) => setCookieValue(c, 'vishnu')).filter(Boolean);
          rounds.push({
            round, setup, pre: pre && pre.value, post: post && post.value, burst, seen, who, final, loginSeen, loginIds,
          });
        } finally {
          await context.close();
        }
      }
      const fails = (pred) => rounds.filter((r) => !pred(r)).map((r) => r.round);
      const statuses = rounds.flatMap((r) => r.burst.counters.map((c) => c.status));
      const n200 = statuses.filter((s) => s === 200).length;
      const n409 = statuses.filter((s) => s === 409).length;
      const show = (bad, f) => (bad.length ? rounds.filter((r) => bad.includes(r.round)).map(f) : undefined);

      let bad = fails((r) => r.setup === '1' && !!r.pre);
      check(`each of ${ROUNDS} fresh contexts starts with a session (GET /counter answers 1)`, bad.length === 0, show(bad, (r) => [r.round, r.setup]));
      bad = fails((r) => r.loginSeen.length === 1 && r.loginSeen[0].status === 303 && r.burst.login.type === 'opaqueredirect');
      check('the login POST in the middle of the burst answers 303 (redirect not followed)', bad.length === 0,
        show(bad, (r) => [r.round, r.loginSeen.map((s) => s.status), r.burst.login]));
      bad = fails((r) => r.burst.counters.every((c) => c.status === 200 || c.status === 409));
      check(`every /counter of the bursts answers 200 or 409 (${ROUNDS} rounds: ${n200} x 200, ${n409} x 409)`, bad.length === 0,
        show(bad, (r) => [r.round, r.burst.counters.map((c) => c.status)]));
      bad = fails((r) => r.who.status === 200 && r.who.body === 'ada');
      check('after the burst /whoami in the page answers 200 "ada" (still logged in)', bad.length === 0, show(bad, (r) => [r.round, r.who]));
      bad = fails((r) => r.loginIds.length === 1 && !!r.post && r.post === r.loginIds[0] && r.post !== r.pre);
      check('the browser holds the cookie the login set (a new id, not the pre-login one)', bad.length === 0,
        show(bad, (r) => ({ round: r.round, pre: r.pre, post: r.post, login: r.loginIds, reverted: r.post === r.pre })));
      bad = fails((r) => r.seen.every((s) => !s.error && s.setCookies.every((c) => !isRemoval(c, 'vishnu'))));
      check('no response of the bursts removes the session cookie', bad.length === 0,
        show(bad, (r) => [r.round, r.seen.filter((s) => s.error || s.setCookies.some((c) => isRemoval(c, 'vishnu')))]));
      bad = fails((r) => r.seen.every((s) => s.path !== '/counter' || s.status !== 409 || s.setCookies.length === 0));
      check('a 409 answer carries no Set-Cookie', bad.length === 0, show(bad, (r) => [r.round, r.seen.filter((s) => s.status === 409)]));
      // The session data carries over the login: the setup GET and every 200 counted, 409s did not.
      bad = fails((r) => {
        const ok = r.burst.counters.filter((c) => c.status === 200);
        const bodies = new Set(ok.map((c) => c.body));
        return r.final.status === 200 && bodies.size === ok.length && !bodies.has('1')
          && Number(r.final.body) === 1 + ok.length + 1;
      });
      check('the final /counter = 1 + setup + the 200 answers (no increment lost, none counted twice)', bad.length === 0,
        show(bad, (r) => ({ round: r.round, final: r.final, answers: r.burst.counters.map((c) => `${c.status}:${c.body}`) })));
    } finally {
      await demo.stop();
    }
  });
}

for (const front of FRONTS) {
  await section(`a renewal in the middle of a burst loses no increment (--renew-every 1 --grace 5) [${front.name}]`, async () => {
    const demo = await startDemo(`renew-burst-${front.name}`, ['--renew-every', '1', '--grace', '5'], 'http', front.bin);
    const base = `http://127.0.0.1:${demo.port}`;
    const ROUNDS = 3;
    const rounds = [];
    try {
      for (let round = 1; round <= ROUNDS; round++) {
        const context = await browser.newContext();
        const page = await context.newPage();
        try {
          const first = await page.goto(`${base}/counter`);
          const setup = await bodyOf(first);
          const before = sessionCookie(await context.cookies(), 'vishnu');
          await sleep(1200); // the next use renews the id
          const rec = recordResponses(page);
          const burst = await counterBurst(page, 30);
          const seen = await rec.done();
          const [final] = await counterBurst(page, 1);
          const after = sessionCookie(await context.cookies(), 'vishnu');
          const ids = [...new Set(seen.flatMap((s) => s.setCookies).map((c) => setCookieValue(c, 'vishnu')).filter(Boolean))];
          rounds.push({ round, setup, before: before && before.value, after: after && after.value, burst, seen, final, ids });
        } finally {
          await context.close();
        }
      }
      const fails = (pred) => rounds.filter((r) => !pred(r)).map((r) => r.round);
      const show = (bad, f) => (bad.length ? rounds.filter((r) => bad.includes(r.round)).map(f) : undefined);

      let bad = fails((r) => r.setup === '1' && !!r.before);
      check(`GET /counter starts the session at 1 (${ROUNDS} rounds, fresh contexts)`, bad.length === 0, show(bad, (r) => [r.round, r.setup]));
      bad = fails((r) => r.burst.every((c) => c.status === 200));
      check('all 30 concurrent /counter fetches after 1.2 s answer 200', bad.length === 0,
        show(bad, (r) => [r.round, r.burst.map((c) => `${c.status}:${c.body}`)]));
      bad = fails((r) => r.burst.map((c) => Number(c.body)).sort((a, b) => a - b).join(',')
        === Array.from({ length: 30 }, (_, i) => i + 2).join(','));
      check('the 30 answers are exactly the counts 2..31 (each increment once)', bad.length === 0,
        show(bad, (r) => [r.round, r.burst.map((c) => `${c.status}:${c.body}`)]));
      bad = fails((r) => r.final.status === 200 && r.final.body === '32');
      check('a final GET /counter answers 32', bad.length === 0, show(bad, (r) => [r.round, r.final]));
      bad = fails((r) => r.ids.length >= 1 && !r.ids.includes(r.before));
      check('the burst was sent a renewed id (Set-Cookie with a new value)', bad.length === 0,
        show(bad, (r) => ({ round: r.round, before: r.before, set: r.ids })));
      bad = fails((r) => !!r.after && r.after !== r.before);
      check('the browser\'s session cookie changed (renewed)', bad.length === 0,
        show(bad, (r) => ({ round: r.round, before: r.before, after: r.after })));
      bad = fails((r) => r.seen.every((s) => !s.error && s.setCookies.every((c) => !isRemoval(c, 'vishnu'))));
      check('no response of the burst removes the session cookie', bad.length === 0,
        show(bad, (r) => [r.round, r.seen.filter((s) => s.error || s.setCookies.some((c) => isRemoval(c, 'vishnu')))]));
    } finally {
      await demo.stop();
    }
  });
}

// HTTPS parts: a second browser, launched with --ignore-certificate-errors.
const certPath = path.join(tmp, 'cert.pem');
const keyPath = path.join(tmp, 'key.pem');
const ssl = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2',
  '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  '-keyout', keyPath, '-out', certPath], { encoding: 'utf8' });
check('openssl made a self-signed certificate for localhost and 127.0.0.1', ssl.status === 0, ssl.stderr);
const tlsBrowser = await launch(['--ignore-certificate-errors']).catch((e) => die(`cannot launch ${chromiumPath}: ${e.message}`));

for (const front of FRONTS) {
  await section(`HTTPS: Secure cookie named __Host-vishnu [${front.name}]`, async () => {
    const demo = await startDemo(`https-${front.name}`, ['--tls-cert', certPath, '--tls-key', keyPath, '--cookie-name', '__Host-vishnu'], 'https', front.bin);
    const base = `https://127.0.0.1:${demo.port}`;
    const context = await tlsBrowser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    try {
      let r = await page.goto(`${base}/counter`);
      const setCookie = (await r.allHeaders())['set-cookie'] || '';
      const first = await bodyOf(r);
      r = await page.reload();
      check('over HTTPS the counter goes up across reloads (1, 2)', first === '1' && (await bodyOf(r)) === '2', [first, await bodyOf(r)]);
      check('the Set-Cookie header names __Host-vishnu and is Secure; HttpOnly',
        setCookie.startsWith('__Host-vishnu=') && /;\s*Secure/i.test(setCookie) && /;\s*HttpOnly/i.test(setCookie), setCookie);
      const cookies = await context.cookies();
      const c = sessionCookie(cookies, '__Host-vishnu');
      check('the browser stored __Host-vishnu as Secure, HttpOnly, Path=/, host-only',
        !!c && c.secure && c.httpOnly && c.path === '/' && c.domain === '127.0.0.1', cookies);
      check('no cookie under the default name', !sessionCookie(cookies, 'vishnu'), cookies.map((x) => x.name));
      await page.goto(`${base}/`);
      check('/ shows the counter over HTTPS', (await page.textContent('#counter')) === '2');
      const js = await page.evaluate(() => document.cookie);
      check('document.cookie does not show __Host-vishnu', !js.includes('__Host-vishnu'), js);

      const status = await loginViaForm(page, base, 'carol');
      check('login over HTTPS answers 303 and / shows the user', status === 303 && (await page.textContent('#user')) === 'carol', status);
      r = await page.goto(`${base}/whoami`);
      check('/whoami over HTTPS names the user', r.status() === 200 && (await bodyOf(r)) === 'carol', r.status());
      r = await page.goto(`${base}/counter`);
      check('the counter survives login over HTTPS (3)', (await bodyOf(r)) === '3', await bodyOf(r));
      await logoutViaForm(page, base);
      check('logout over HTTPS removes __Host-vishnu', !sessionCookie(await context.cookies(), '__Host-vishnu'));
      r = await page.goto(`${base}/whoami`);
      check('/whoami over HTTPS answers 401 after logout', r.status() === 401, r.status());
    } finally {
      await context.close();
      await demo.stop();
    }
  });
}

// Cross-site request forgery of /logout. The demo runs on `localhost`, the attacker's page on
// `127.0.0.1`: different hosts that are different *sites* (ports alone would be same-site).
// `attack` opens the attacker's page in the victim's browser and waits for the forged POST.
async function attack(context, attacker, target) {
  const page = await context.newPage();
  const forged = page.waitForResponse((r) => r.url() === target && r.request().method() === 'POST', { timeout: 15000 });
  await page.goto(`http://127.0.0.1:${attacker.port}/?target=${encodeURIComponent(target)}`);
  const response = await forged;
  const headers = await response.request().allHeaders();
  const setCookie = (await response.allHeaders())['set-cookie'] || '';
  await page.waitForLoadState('load').catch(() => {});
  await page.close();
  return { status: response.status(), cookieHeader: headers.cookie || '', setCookie };
}

await section('SameSite=Strict: a cross-site POST to /logout carries no cookie', async () => {
  const demo = await startDemo('strict', ['--same-site', 'strict']);
  const attacker = await startAttacker();
  const victim = `http://localhost:${demo.port}`;
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await loginViaForm(page, victim, 'dave');
    let r = await page.goto(`${victim}/whoami`);
    check('the victim is logged in on localhost (whoami 200)', r.status() === 200 && (await bodyOf(r)) === 'dave', r.status());
    const cookie = sessionCookie(await context.cookies(), 'vishnu');
    check('the cookie is SameSite=Strict', !!cookie && cookie.sameSite === 'Strict', cookie);

    const forged = await attack(context, attacker, `${victim}/logout`);
    check('the page on 127.0.0.1 did POST to localhost/logout (the demo answered 303)', forged.status === 303, forged.status);
    check('the cross-site POST carried no session cookie', !forged.cookieHeader.includes('vishnu='), forged.cookieHeader);

    // The session is intact on the server: a copy of the cookie still works.
    const copy = await browser.newContext();
    await copy.addCookies([{ name: 'vishnu', value: cookie.value, domain: 'localhost', path: '/', httpOnly: true, sameSite: 'Strict' }]);
    r = await (await copy.newPage()).goto(`${victim}/whoami`);
    check('the victim\'s session still exists on the server (its cookie answers 200)', r.status() === 200, r.status());
    await copy.close();

    const left = sessionCookie(await context.cookies(), 'vishnu');
    check('the victim\'s browser still holds its session cookie', !!left && left.value === cookie.value,
      left ? 'a different cookie' : `gone: the response to the forged POST said Set-Cookie: ${forged.setCookie}`);
    r = await page.goto(`${victim}/whoami`);
    check('the victim is still logged in afterwards (whoami 200 in the victim\'s tab)',
      r.status() === 200 && (await bodyOf(r)) === 'dave', r.status());
  } finally {
    await context.close();
    await attacker.close();
    await demo.stop();
  }
});

await section('control: SameSite=None (HTTPS) lets the same cross-site POST log the victim out', async () => {
  const demo = await startDemo('none', ['--tls-cert', certPath, '--tls-key', keyPath, '--same-site', 'none'], 'https');
  const attacker = await startAttacker();
  const victim = `https://localhost:${demo.port}`;
  const context = await tlsBrowser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  try {
    await loginViaForm(page, victim, 'erin');
    let r = await page.goto(`${victim}/whoami`);
    check('the victim is logged in on https://localhost (whoami 200)', r.status() === 200, r.status());
    const cookie = sessionCookie(await context.cookies(), 'vishnu');
    check('the cookie is SameSite=None; Secure', !!cookie && cookie.sameSite === 'None' && cookie.secure, cookie);
    const forged = await attack(context, attacker, `${victim}/logout`);
    check('the cross-site POST carried the session cookie', forged.cookieHeader.includes('vishnu='), forged.cookieHeader);
    r = await page.goto(`${victim}/whoami`);
    check('the forged logout worked (whoami 401): the attacker page is effective', r.status() === 401, r.status());
  } finally {
    await context.close();
    await attacker.close();
    await demo.stop();
  }
});

// The embedding site for the Partitioned checks: an HTTPS page on 127.0.0.1 (a different site
// from the demo on localhost) whose only content is an iframe of GET /?src=URL.
async function startEmbedder() {
  const port = await freePort();
  const server = https.createServer({ cert: fs.readFileSync(certPath), key: fs.readFileSync(keyPath) }, (req, res) => {
    const src = new URL(req.url, 'https://127.0.0.1').searchParams.get('src') || '';
    const esc = src.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html><body><h1>Embedding site</h1><iframe id="f" src="${esc}"></iframe></body></html>`);
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  servers.add(server);
  return {
    url: (src) => `https://127.0.0.1:${port}/?src=${encodeURIComponent(src)}`,
    close: () => new Promise((r) => { servers.delete(server); server.close(r); }),
  };
}

// Loads the embedding page with `target` in its iframe; returns what the iframe showed, the
// Cookie header its request carried and the Set-Cookie headers it was answered with.
async function viaIframe(page, embedder, target) {
  const answered = page.waitForResponse((r) => r.url() === target, { timeout: 15000 });
  await page.goto(embedder.url(target));
  const response = await answered;
  await page.waitForLoadState('load');
  const frame = page.frames().find((f) => f !== page.mainFrame() && f.url() === target);
  const body = frame ? (await frame.evaluate(() => document.body.innerText)).trim() : `(no iframe at ${target})`;
  const cookieHeader = (await response.request().allHeaders()).cookie || '';
  const setCookies = (await response.headersArray())
    .filter((h) => h.name.toLowerCase() === 'set-cookie').flatMap((h) => h.value.split('\n'));
  return { body, cookieHeader, setCookies };
}

await section('Partitioned (CHIPS) cookie: first-party and in a third-party iframe (--partitioned, HTTPS)', async () => {
  // A Partitioned cookie must be Secure: without TLS the demo refuses to start (exit 2).
  const port = await freePort();
  const refused = spawnSync(demoBin, ['--port', String(port), '--store', 'memory', '--partitioned'],
    { encoding: 'utf8', timeout: 10000, env: { ...process.env, NO_COLOR: '1' } });
  check('--partitioned without TLS: the demo exits 2 with a configuration error',
    refused.status === 2 && /configuration/.test(refused.stderr), { status: refused.status, signal: refused.signal, stderr: refused.stderr.trim().slice(-300) });
  const demo = await startDemo('partitioned', ['--tls-cert', certPath, '--tls-key', keyPath, '--partitioned', '--same-site', 'none'], 'https');
  const embedder = await startEmbedder();
  const base = `https://localhost:${demo.port}`;
  const first = await tlsBrowser.newContext({ ignoreHTTPSErrors: true });
  const third = await tlsBrowser.newContext({ ignoreHTTPSErrors: true });
  try {
    // First-party: the demo is the top-level site.
    const page = await first.newPage();
    await page.goto(`${base}/`);
    const rec = recordResponses(page);
    const [one] = await counterBurst(page, 1);
    const [two] = await counterBurst(page, 1);
    const seen = await rec.done();
    check('first-party: GET /counter twice in the page answers 1, 2 (the Partitioned cookie was stored and sent)',
      one.status === 200 && one.body === '1' && two.status === 200 && two.body === '2', [one, two]);
    const set = seen.filter((s) => s.path === '/counter').flatMap((s) => s.setCookies).filter((c) => c.startsWith('vishnu='));
    check('first-party: the Set-Cookie header is Partitioned; Secure; SameSite=None',
      set.length >= 1 && set.every((c) => /;\s*Partitioned\s*(;|$)/i.test(c) && /;\s*Secure/i.test(c) && /;\s*SameSite=None/i.test(c)), set);
    let cookies = await first.cookies();
    const own = cookies.filter((c) => c.name === 'vishnu');
    check('first-party: the browser holds one vishnu cookie, partitionKey https://localhost (Secure, HttpOnly)',
      own.length === 1 && own[0].partitionKey === 'https://localhost' && own[0].secure && own[0].httpOnly, cookies);
    await loginViaForm(page, base, 'fay');
    let r = await page.goto(`${base}/whoami`);
    check('first-party: login works with the Partitioned cookie (whoami "fay")', r.status() === 200 && (await bodyOf(r)) === 'fay', r.status());
    const recOut = recordResponses(page);
    await logoutViaForm(page, base);
    const out = (await recOut.done()).filter((s) => s.path === '/logout').flatMap((s) => s.setCookies);
    check('first-party: logout answers a removal Set-Cookie that is Partitioned',
      out.some((c) => isRemoval(c, 'vishnu') && /;\s*Partitioned\s*(;|$)/i.test(c)), out);
    cookies = await first.cookies();
    check('first-party: the removal deleted the partitioned cookie from the browser', !sessionCookie(cookies, 'vishnu'), cookies);

    // Third-party: the demo in an iframe of a page on https://127.0.0.1 (another site).
    const tp = await third.newPage();
    const target = `${base}/counter`;
    const a = await viaIframe(tp, embedder, target);
    const b = await viaIframe(tp, embedder, target);
    check('third-party: the iframe counter goes 1, 2 across two loads of the embedding page',
      a.body === '1' && b.body === '2', [a.body, b.body]);
    check('third-party: the first iframe answer set a Partitioned cookie, the second load sent it back',
      a.setCookies.some((c) => c.startsWith('vishnu=') && /;\s*Partitioned\s*(;|$)/i.test(c)) && b.cookieHeader.includes('vishnu='),
      { set: a.setCookies, sent: b.cookieHeader });
    cookies = await third.cookies();
    const embedded = cookies.filter((c) => c.name === 'vishnu');
    check('third-party: the cookie is stored under partitionKey https://127.0.0.1 (the embedding site)',
      embedded.length === 1 && embedded[0].partitionKey === 'https://127.0.0.1', cookies);
    const top = await tp.goto(target);
    const topCookie = (await top.request().allHeaders()).cookie || '';
    check('third-party: the demo visited top-level does not get the iframe\'s cookie (its counter starts at 1)',
      (await bodyOf(top)) === '1' && !topCookie.includes('vishnu='), { body: await bodyOf(top), sent: topCookie });
    const c = await viaIframe(tp, embedder, target);
    check('third-party: the iframe\'s partition is untouched by the top-level visit (the iframe counts 3)', c.body === '3', c.body);
    cookies = (await third.cookies()).filter((x) => x.name === 'vishnu');
    const keys = cookies.map((x) => x.partitionKey).sort();
    check('third-party: two vishnu cookies, one per partition (https://127.0.0.1, https://localhost), different ids',
      keys.join(',') === 'https://127.0.0.1,https://localhost' && cookies[0].value !== cookies[1].value, cookies);
  } finally {
    await first.close();
    await third.close();
    await demo.stop();
  }

  // Control: the same iframe without --partitioned. This browser keeps no unpartitioned
  // third-party cookie, so the iframe never counts past 1: the checks above show Partitioned at work.
  const plain = await startDemo('unpartitioned', ['--tls-cert', certPath, '--tls-key', keyPath, '--same-site', 'none'], 'https');
  const context = await tlsBrowser.newContext({ ignoreHTTPSErrors: true });
  try {
    const page = await context.newPage();
    const target = `https://localhost:${plain.port}/counter`;
    const a = await viaIframe(page, embedder, target);
    const b = await viaIframe(page, embedder, target);
    check('control: without --partitioned the Set-Cookie is not Partitioned and the iframe stays at 1, 1 (third-party cookie not kept)',
      a.setCookies.some((x) => x.startsWith('vishnu=')) && !a.setCookies.some((x) => /Partitioned/i.test(x))
        && a.body === '1' && b.body === '1' && !b.cookieHeader.includes('vishnu='),
      { bodies: [a.body, b.body], set: a.setCookies, sent: b.cookieHeader });
  } finally {
    await context.close();
    await embedder.close();
    await plain.stop();
  }
});

await closeBrowser(browser);
await closeBrowser(tlsBrowser);
for (const child of [...children]) await stopDemo(child);
if (keepLogs) console.log(`logs kept in ${tmp}`);
console.log(`e2e-browser: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
