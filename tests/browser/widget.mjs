// Usage: node widget.mjs <http-url of a running Parlor in dev mode> [bad-key]
// Headless chromium (fake microphone) opens /widget with every non-loopback request aborted, clicks
// the widget's call button and checks: livekit-client came from Parlor, the call connects through
// the embed token, the microphone level meter shows real (Web Audio) levels, hang-up disconnects.
// With `bad-key`, the page uses an unknown public key and must show the UNAUTHORIZED message.
import { chromium } from 'playwright-core';

const base = (process.argv[2] || '').replace(/\/$/, '');
const badKey = process.argv[3] === 'bad-key';
if (!base) { console.error('usage: node widget.mjs http://127.0.0.1:7880 [bad-key]'); process.exit(2); }
const loopback = (u) => {
  try { const h = new URL(u).hostname; return h === '127.0.0.1' || h === 'localhost' || h === '[::1]'; } catch { return false; }
};
const result = { ok: false, checks: {}, blocked: [] };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection', '--disable-background-networking', '--disable-component-update',
    '--no-first-run', '--disable-quic', '--autoplay-policy=no-user-gesture-required'],
});
const logs = [];
try {
  const ctx = await browser.newContext({ permissions: ['microphone'], viewport: { width: 360, height: 640 } });
  await ctx.route('**/*', (route) => {
    const u = route.request().url();
    if (u.startsWith('data:') || u.startsWith('blob:') || loopback(u)) return route.continue();
    result.blocked.push(u);
    return route.abort('blockedbyclient');
  });
  const page = await ctx.newPage();
  page.on('console', (m) => logs.push(m.type() + ': ' + m.text()));
  page.on('pageerror', (e) => logs.push('pageerror: ' + e.message));
  const host = () => document.querySelector('.parlor-widget');
  const until = (fn, ms, what) => page.waitForFunction(fn, null, { timeout: ms }).catch(() => { throw new Error('timeout: ' + what); });
  const c = result.checks;
  await page.goto(base + '/widget' + (badKey ? '?key=pk_live_unknown&assistant=asst_x' : ''), { waitUntil: 'load' });
  await until(() => !!document.querySelector('.parlor-widget'), 10000, 'widget mounted');
  await page.click('.parlor-widget >> button.call');
  if (badKey) {
    await until(() => !!document.querySelector('.parlor-widget').dataset.error, 20000, 'error shown');
    c.errorCode = await page.evaluate(() => document.querySelector('.parlor-widget').dataset.error);
    c.errorText = await page.evaluate(() => document.querySelector('.parlor-widget').shadowRoot.querySelector('.error').textContent);
    result.ok = c.errorCode === 'UNAUTHORIZED' && /Authentication failed/.test(c.errorText) && result.blocked.length === 0;
  } else {
    await until(() => ['connected', 'error'].includes(document.querySelector('.parlor-widget').dataset.state), 30000, 'connected');
    c.state = await page.evaluate(() => document.querySelector('.parlor-widget').dataset.state);
    c.error = await page.evaluate(() => document.querySelector('.parlor-widget').dataset.error || null);
    c.callId = await page.evaluate(() => document.querySelector('.parlor-widget').dataset.callId);
    c.bundleFromParlor = await page.evaluate((b) => performance.getEntriesByType('resource')
      .some((e) => e.name.startsWith(b + '/assets/livekit-client')), base);
    // Chromium's fake microphone plays a beep: the meter must show it (real Web Audio levels).
    await until(() => Number(document.querySelector('.parlor-widget').dataset.micLevel || 0) > 5, 15000, 'mic level');
    c.micLevel = await page.evaluate(() => Number(document.querySelector('.parlor-widget').dataset.micLevel));
    c.fitsNarrow = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
    await page.click('.parlor-widget >> button.hang');
    await until(() => document.querySelector('.parlor-widget').dataset.state === 'disconnected', 15000, 'hung up');
    c.afterHangUp = await page.evaluate(() => document.querySelector('.parlor-widget').dataset.state);
    c.errorAfterHangUp = await page.evaluate(() => document.querySelector('.parlor-widget').dataset.error || null);
    result.ok = c.state === 'connected' && !c.error && !!c.callId && c.bundleFromParlor && c.micLevel > 5
      && c.fitsNarrow && c.afterHangUp === 'disconnected' && !c.errorAfterHangUp && result.blocked.length === 0;
  }
} catch (e) {
  result.error = String(e && e.stack || e);
} finally {
  result.checks.nonLoopbackRequests = result.blocked.length;
  await browser.close();
}
if (!result.ok) result.logs = logs.slice(-30);
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
