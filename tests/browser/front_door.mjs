// Usage: node front_door.mjs <http-url of a running Parlor in dev mode>
// The README's run command's acceptance check (.ci/run): headless Debian chromium opens /demo and
// /docs with every non-loopback request aborted and counted. Passes when livekit-client came from
// Parlor (window.LivekitClient), no request left loopback, the page fits a 360 px window, a bad
// token shows an error on the page, and Join with the dev demo token reaches "connected".
import { chromium } from 'playwright-core';

const base = (process.argv[2] || '').replace(/\/$/, '');
if (!base) { console.error('usage: node front_door.mjs http://127.0.0.1:7880'); process.exit(2); }
const loopback = (u) => {
  try {
    const h = new URL(u).hostname;
    return h === '127.0.0.1' || h === 'localhost' || h === '[::1]' || h === '::1';
  } catch { return false; }
};
const result = { ok: false, checks: {}, blocked: [] };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection', '--disable-background-networking', '--disable-component-update',
    '--no-first-run', '--disable-quic'],
});
const logs = [];
try {
  const ctx = await browser.newContext({ permissions: ['microphone'], viewport: { width: 360, height: 640 } });
  // Every request the pages make goes through here: non-loopback ones are counted and aborted.
  await ctx.route('**/*', (route) => {
    const u = route.request().url();
    if (u.startsWith('data:') || u.startsWith('blob:') || loopback(u)) return route.continue();
    result.blocked.push(u);
    return route.abort('blockedbyclient');
  });
  const page = await ctx.newPage();
  page.on('console', (m) => logs.push(m.type() + ': ' + m.text()));
  page.on('pageerror', (e) => logs.push('pageerror: ' + e.message));
  const until = (fn, arg, ms, what) => page.waitForFunction(fn, arg, { timeout: ms }).catch(() => { throw new Error('timeout: ' + what); });

  await page.goto(base + '/demo', { waitUntil: 'load' });
  const c = result.checks;
  c.livekitClient = await page.evaluate(() => typeof window.LivekitClient === 'object' && typeof window.LivekitClient.Room === 'function');
  c.bundleUrl = await page.evaluate(() => performance.getEntriesByType('resource').map((e) => e.name).find((n) => n.includes('livekit-client')) || null);
  c.bundleFromParlor = !!c.bundleUrl && c.bundleUrl.startsWith(base + '/assets/');
  if (!c.livekitClient) throw new Error('livekit-client did not load; the page says: '
    + await page.evaluate(() => (document.getElementById('error') || {}).textContent || '(no #error element)'));
  const icon = await page.evaluate(() => document.querySelector('link[rel=icon]').href);
  c.favicon = (await ctx.request.get(icon)).headers()['content-type'];
  // Narrow window: nothing forces horizontal scrolling.
  c.fitsNarrow = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

  // A bad token: the error shows on the page.
  await page.fill('#token', 'not-a-token');
  await page.click('#join');
  await until(() => document.getElementById('error').textContent.length > 0, null, 20000, 'error for a bad token');
  c.badTokenError = await page.textContent('#error');

  // Dev mode: empty token, Join mints a demo-room token and connects.
  await page.fill('#token', '');
  await page.click('#join');
  await until(() => ['connected', 'error'].includes(document.getElementById('status').dataset.state), null, 30000, 'connected');
  c.status = await page.textContent('#status');
  c.connected = (await page.getAttribute('#status', 'data-state')) === 'connected';
  c.errorAfterJoin = await page.textContent('#error');
  await page.click('#leave');

  // The API reference renders from /openapi.json with local assets only.
  await page.goto(base + '/docs', { waitUntil: 'load' });
  await until(() => Number(document.getElementById('ops').dataset.count || 0) > 0, null, 10000, 'docs rendered');
  c.docsOperations = await page.evaluate(() => Number(document.getElementById('ops').dataset.count));
  c.docsFitsNarrow = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

  c.nonLoopbackRequests = result.blocked.length;
  result.ok = c.livekitClient && c.bundleFromParlor && c.favicon === 'image/svg+xml' && c.fitsNarrow
    && /Could not join/.test(c.badTokenError) && c.connected && !c.errorAfterJoin
    && c.docsOperations >= 30 && c.docsFitsNarrow && c.nonLoopbackRequests === 0;
} catch (e) {
  result.error = String(e && e.stack || e);
} finally {
  result.checks.nonLoopbackRequests = result.blocked.length;
  await browser.close();
}
if (!result.ok) result.logs = logs.slice(-30);
console.log(JSON.stringify(result, null, 1));
process.exit(result.ok ? 0 : 1);
