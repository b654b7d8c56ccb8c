// The operator console's flows in a real browser: the system's headless
// Chromium, driven by playwright-core (no browser download).
//
// Run by `tests/tests/e2e/browser.rs`, which starts the emulator and
// `connector-host serve`, and answers this script's questions on stdin:
// the script prints `ask hold` before the first sync (the emulator then
// holds the devices stream in the middle) and `ask release` once the
// browser has shown its progress; each question waits for a line back.
//
// Everything comes from the environment (never argv: the sign-in link and
// the password are secrets):
//   CONSOLE_SIGN_IN     the sign-in link serve printed
//   INSTANCE            the emulator's base URL
//   SN_USER, SN_PASSWORD, WRONG_PASSWORD
//   FIND_IP, FIND_DEVICE, FIND_MAC, FIND_APP, FIND_APP_CRITICALITY
//   SCREENSHOTS         the directory the screenshots go to
//   CHROMIUM            the browser (default /usr/bin/chromium)
//
// Exit status 0 when every flow passed; otherwise the failed step is named.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const answers = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
/** Asks the test driving this script for `what`, and waits for its answer. */
async function ask(what) {
  console.log(`ask ${what}`);
  const { value, done } = await answers.next();
  if (done || value.trim() !== 'ok') throw new Error(`no answer to "ask ${what}"`);
}

let step = 'start';
function begin(name) {
  step = name;
  console.log(`step ${name}`);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** Polls `probe` on `page` (surviving reloads) until it returns true. */
async function until(page, probe, what, patience = 120_000) {
  const deadline = Date.now() + patience;
  for (;;) {
    try {
      if (await probe()) return;
    } catch (e) {
      // The page was reloading under the probe: ask again.
      if (!/context was destroyed|navigation/i.test(String(e))) throw e;
    }
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} (${page.url()})`);
    await page.waitForTimeout(100);
  }
}

const screenshots = env('SCREENSHOTS');
mkdirSync(screenshots, { recursive: true });
async function shoot(page, name) {
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  // A Content-Security-Policy violation or a script error is a failure.
  // (A refused form is answered 422 on purpose: the browser logs that too.)
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 422/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (r.status() === 404) problems.push(`not found: ${r.url()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  await run(page);
  check(problems.length === 0, `the browser reported: ${problems.join('; ')}`);
  console.log('done');
} catch (e) {
  console.error(`FAILED at step "${step}": ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  answers.return?.();
  process.stdin.destroy();
}

/** Every flow, in order, on one page (one browser session). */
async function run(page) {
  await signIn(page);
  await connect(page);
  await syncNow(page);
  await findDevice(page);
  await narrowWindow(page);
  await disconnect(page);
}

/** Signs in with the link serve printed. */
async function signIn(page) {
  begin('sign in');
  await page.goto(env('CONSOLE_SIGN_IN'));
  await page.getByRole('heading', { name: 'Data connectors', level: 1 }).waitFor();
  check(new URL(page.url()).pathname === '/', `signed in to ${page.url()}`);
  await shoot(page, '01-data-connectors-empty');
}

/** Connect: a wrong password, a test, then the connection and its first sync. */
async function connect(page) {
  const password = env('SN_PASSWORD');
  const wrong = env('WRONG_PASSWORD');
  begin('open the Connect form');
  await page.getByRole('link', { name: 'Connect servicenow' }).click();
  await page.getByRole('heading', { name: 'Connect servicenow' }).waitFor();
  check(await page.locator('[data-method-fields="api-key"]').isHidden(),
    'the API key fields show although User name and password is chosen');
  await shoot(page, '02-connect-form');

  begin('connect with a wrong password');
  await page.getByLabel('Connection name').fill('cmdb');
  await page.getByLabel('instance').fill(env('INSTANCE'));
  await page.locator('#a-basic-username').fill(env('SN_USER'));
  await page.locator('#a-basic-password').fill(wrong);
  await page.getByRole('button', { name: 'Connect', exact: true }).click();
  await page.getByText('Connection test failed', { exact: true }).waitFor();
  await page.getByText(/rejected the credentials/).first().waitFor();
  check(!(await page.content()).includes(wrong), 'the wrong password came back to the browser');
  await shoot(page, '03-wrong-password');

  begin('test the connection');
  await page.locator('#a-basic-password').fill(password);
  await page.getByRole('button', { name: 'Test connection' }).click();
  await page.getByText(/^Connection test passed/).waitFor();
  check(!(await page.content()).includes(password), 'the password came back to the browser');
  check(await page.locator('#a-basic-password').inputValue() === '', 'the password field was filled in');
  await shoot(page, '04-test-passed');

  begin('connect, and watch the first sync');
  await ask('hold');
  await page.getByRole('button', { name: 'Connect', exact: true }).click();
  await page.waitForURL('**/connections/cmdb');
  const progress = page.locator('ul.progress li', { hasText: /^devices: [1-9]\d* of \d+ records/ });
  await progress.waitFor();
  await shoot(page, '05-sync-progress');
  await ask('release');
  await until(page, async () => (await page.locator('.status-connected').count()) > 0
    && (await page.locator('ul.progress').count()) === 0, 'the first sync to end');
  await shoot(page, '06-connection');
}

/** Sync now: one more run on the connection's page; then the Data connectors page. */
async function syncNow(page) {
  begin('sync now');
  const runs = await page.locator('details.run').count();
  await page.getByRole('button', { name: 'Sync now' }).click();
  await until(page, async () => (await page.locator('details.run').count()) === runs + 1
    && (await page.getByText(/^Next sync /).count()) > 0, 'the second sync to end');
  await page.getByRole('link', { name: 'Data connectors' }).first().click();
  await page.locator('.tile .status-connected').first().waitFor();
  await shoot(page, '07-data-connectors');
  await page.getByRole('link', { name: 'cmdb', exact: true }).click();
}

/** The record browser: a device found by an adapter's IP, with what hangs off it. */
async function findDevice(page) {
  begin('find a device by IP');
  await page.getByRole('link', { name: 'devices', exact: true }).click();
  await page.getByLabel('Search values').fill(env('FIND_IP'));
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByText(/^Records 1–\d+ of \d+ with a value containing/).waitFor();
  await shoot(page, '08-search-by-ip');
  await page.getByRole('link', { name: env('FIND_DEVICE'), exact: true }).click();
  for (const text of [env('FIND_MAC'), env('FIND_APP'), env('FIND_APP_CRITICALITY')]) {
    await page.getByText(text, { exact: false }).first().waitFor();
  }
  await shoot(page, '09-device');
}

/** A phone-sized window: nothing wider than it, Sync now reached with Tab. */
async function narrowWindow(page) {
  begin('a narrow window, by keyboard');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(new URL('/', page.url()).href);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the Data connectors page is ${overflow}px wider than a narrow window`);
  let reached = false;
  for (let i = 0; i < 30 && !reached; i += 1) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.textContent?.trim() === 'Sync now');
  }
  check(reached, 'Sync now cannot be reached with the Tab key');
  await shoot(page, '10-narrow-window');
  await page.setViewportSize({ width: 1280, height: 800 });
}

/** Disconnect, deleting the records. */
async function disconnect(page) {
  begin('disconnect');
  await page.getByRole('link', { name: 'Disconnect…' }).first().click();
  await page.getByRole('heading', { name: /^Disconnect .*\?$/ }).waitFor();
  await page.getByLabel(/Also delete its stored records/).check();
  await page.getByRole('button', { name: 'Disconnect' }).click();
  await until(page, async () => {
    if ((await page.getByText(/^Disconnected; its \d+ records were deleted/).count()) > 0) return true;
    await page.reload();
    return false;
  }, 'the disconnection to finish');
  await shoot(page, '11-disconnected');
}
