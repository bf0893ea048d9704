#!/usr/bin/env node
// vishnu end-to-end test in a real browser: headless Chromium (Debian's /usr/bin/chromium),
// driven by playwright-core, against the Rust demo (crates/vishnu/examples/demo.rs).
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
with headless Chromium:
  - the counter goes up across reloads of /counter, and / shows it;
  - login through the form on / shows the user; logout removes the cookie, /whoami is then 401;
  - document.cookie does not show the HttpOnly session cookie;
  - with --timeout 2 the session is gone after 3 idle seconds (also for a replayed cookie);
  - over HTTPS (self-signed certificate made with openssl): a Secure cookie named __Host-vishnu,
    counter, login and logout;
  - SameSite=Strict: an auto-submitting form on http://127.0.0.1:PORT POSTing to the demo's
    /logout on http://localhost:PORT (a different site) does not carry the cookie and leaves the
    victim logged in; control: with SameSite=None (over HTTPS) the same page does log out.

Environment:
  VISHNU_DEMO_BIN   the demo binary (default target/debug/examples/demo; build it with
                    'cargo build --example demo --all-features')
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

// Starts the demo with extra flags on a free port; resolves once GET /public answers.
async function startDemo(label, flags, scheme = 'http') {
  const port = await freePort();
  const logPath = path.join(tmp, `demo-${label}.log`);
  const log = fs.openSync(logPath, 'w');
  const child = spawn(demoBin, ['--port', String(port), '--store', 'memory', ...flags], {
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
  throw new Error(`the demo (${flags.join(' ')}) did not answer on port ${port}${exited ? ` (exited: ${JSON.stringify(exited)})` : ''}; log:\n${tail}`);
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

await section('plain HTTP: counter, login, logout, HttpOnly', async () => {
  const demo = await startDemo('plain', []);
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

// HTTPS parts: a second browser, launched with --ignore-certificate-errors.
const certPath = path.join(tmp, 'cert.pem');
const keyPath = path.join(tmp, 'key.pem');
const ssl = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2',
  '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  '-keyout', keyPath, '-out', certPath], { encoding: 'utf8' });
check('openssl made a self-signed certificate for localhost and 127.0.0.1', ssl.status === 0, ssl.stderr);
const tlsBrowser = await launch(['--ignore-certificate-errors']).catch((e) => die(`cannot launch ${chromiumPath}: ${e.message}`));

await section('HTTPS: Secure cookie named __Host-vishnu', async () => {
  const demo = await startDemo('https', ['--tls-cert', certPath, '--tls-key', keyPath, '--cookie-name', '__Host-vishnu'], 'https');
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

await closeBrowser(browser);
await closeBrowser(tlsBrowser);
for (const child of [...children]) await stopDemo(child);
if (keepLogs) console.log(`logs kept in ${tmp}`);
console.log(`e2e-browser: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
