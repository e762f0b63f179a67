// Usage: FAKE_AUDIO=q.wav node assistant.mjs <http-url> <public key> <assistant id> <expected caption>
// The seed's flow through the widget against a Parlor whose assistant answers (any provider):
// headless chromium plays FAKE_AUDIO as the microphone, opens /widget?key=…&assistant=… with every
// non-loopback request aborted, clicks call and waits for the assistant's audio track, real audio
// levels on it, and a caption containing the expected text; then hangs up. With RECORD_MS, the
// assistant's audio as the page plays it is recorded (MediaRecorder, WebM/Opus) from the moment its
// track arrives until RECORD_MS after the expected caption showed (the reply's audio follows its
// text), and returned base64 in `recording` (the test transcribes it).
import { chromium } from 'playwright-core';

const [base0, key, assistant, expect] = process.argv.slice(2);
const base = (base0 || '').replace(/\/$/, '');
if (!base || !key || !assistant || !expect) { console.error('usage: node assistant.mjs URL KEY ASSISTANT CAPTION'); process.exit(2); }
const loopback = (u) => {
  try { const h = new URL(u).hostname; return h === '127.0.0.1' || h === 'localhost' || h === '[::1]'; } catch { return false; }
};
const result = { ok: false, checks: {}, blocked: [] };
const args = ['--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection', '--disable-background-networking', '--disable-component-update',
  '--no-first-run', '--disable-quic', '--autoplay-policy=no-user-gesture-required'];
if (process.env.FAKE_AUDIO) args.push('--use-file-for-fake-audio-capture=' + process.env.FAKE_AUDIO);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args });
const logs = [];
try {
  const ctx = await browser.newContext({ permissions: ['microphone'] });
  await ctx.route('**/*', (route) => {
    const u = route.request().url();
    if (u.startsWith('data:') || u.startsWith('blob:') || loopback(u)) return route.continue();
    result.blocked.push(u);
    return route.abort('blockedbyclient');
  });
  const page = await ctx.newPage();
  page.on('console', (m) => logs.push(m.type() + ': ' + m.text()));
  page.on('pageerror', (e) => logs.push('pageerror: ' + e.message));
  const w = () => document.querySelector('.parlor-widget');
  const until = (fn, arg, ms, what) => page.waitForFunction(fn, arg, { timeout: ms }).catch(() => { throw new Error('timeout: ' + what); });
  const c = result.checks;
  await page.goto(base + '/widget?key=' + encodeURIComponent(key) + '&assistant=' + encodeURIComponent(assistant), { waitUntil: 'load' });
  await until(() => !!document.querySelector('.parlor-widget'), null, 10000, 'widget mounted');
  const t0 = Date.now();
  await page.click('.parlor-widget >> button.call');
  await until(() => document.querySelector('.parlor-widget').dataset.state === 'connected', null, 30000, 'connected');
  c.callId = await page.evaluate(() => document.querySelector('.parlor-widget').dataset.callId);
  await until(() => document.querySelector('.parlor-widget').dataset.assistantTrack === 'subscribed', null, 30000, 'assistant track');
  c.trackAfterMs = Date.now() - t0;
  const recordMs = Number(process.env.RECORD_MS || 0);
  if (recordMs > 0) {
    await page.evaluate((ms) => {
      const el = document.querySelector('.parlor-widget').shadowRoot.querySelector('audio');
      const rec = new MediaRecorder(el.srcObject, { mimeType: 'audio/webm;codecs=opus' });
      const parts = [];
      rec.ondataavailable = (e) => parts.push(e.data);
      window.parlorRecording = new Promise((resolve) => {
        rec.onstop = async () => {
          const buf = new Uint8Array(await new Blob(parts).arrayBuffer());
          let bin = '';
          for (let i = 0; i < buf.length; i += 0x8000) bin += String.fromCharCode(...buf.subarray(i, i + 0x8000));
          resolve(btoa(bin));
        };
      });
      rec.start(250);
      window.parlorStopRecording = () => rec.stop();
    }, recordMs);
  }
  await until((e) => document.querySelector('.parlor-widget').shadowRoot.querySelector('.captions').textContent.includes(e), expect, 60000, 'caption');
  c.captionAfterMs = Date.now() - t0;
  c.captions = await page.evaluate(() => [...document.querySelector('.parlor-widget').shadowRoot.querySelectorAll('.captions p')]
    .map((p) => p.dataset.who + ': ' + p.lastChild.textContent));
  // The level seen when it crossed 5 (read again later it may be back to 0: the reply has ended).
  const level = await until(() => {
    const v = Number(document.querySelector('.parlor-widget').dataset.assistantLevel || 0);
    return v > 5 ? v : 0;
  }, null, 30000, 'assistant audio level');
  c.assistantLevel = await level.jsonValue();
  if (recordMs > 0) {
    await page.waitForTimeout(recordMs);
    await page.evaluate(() => window.parlorStopRecording());
    result.recording = await page.evaluate(() => window.parlorRecording);
  }
  // Hang up. One CI run (2026-12-02) saw the first press not reach room.disconnect() (livekit-client
  // never logged 'disconnect from room'; cause not found): a second press is allowed, and counted in
  // checks.hangClicks so the Rust side reports it; a second miss fails the run.
  c.hangClicks = 0;
  for (;;) {
    await page.click('.parlor-widget >> button.hang');
    c.hangClicks += 1;
    try {
      await until(() => document.querySelector('.parlor-widget').dataset.state === 'disconnected', null, 10000, 'hung up');
      break;
    } catch (e) {
      if (c.hangClicks >= 2) throw e;
      logs.push('warning: hang-up press ' + c.hangClicks + ' did not disconnect within 10 s; pressing again');
    }
  }
  c.error = await page.evaluate(() => document.querySelector('.parlor-widget').dataset.error || null);
  result.ok = !!c.callId && c.assistantLevel > 5 && c.captions.some((t) => t.includes(expect)) && !c.error
    && result.blocked.length === 0;
} catch (e) {
  result.error = String(e && e.stack || e);
} finally {
  result.checks.nonLoopbackRequests = result.blocked.length;
  await browser.close();
}
if (!result.ok) result.logs = logs.slice(-40);
// A large result (the recording) must be flushed before exiting: process.exit() would cut a piped
// stdout short.
process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(result.ok ? 0 : 1));
