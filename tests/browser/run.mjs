// Usage: [PARLOR_BROWSER=firefox] node run.mjs <ws-url> <token-a> <token-b> [video|tcp]
// Opens two pages in a headless browser (Debian chromium through playwright-core by default;
// Firefox ESR through puppeteer-core's WebDriver BiDi with PARLOR_BROWSER=firefox), each joining the
// same room with the unmodified livekit-client SDK; prints one JSON line with what each page
// observed. Exit 0 when both pages subscribed to the other's tracks and saw inbound bytes (and
// decoded frames with video) grow, data packets crossed, A's mute and unmute reached B, and B saw A
// leave. Also reported (never judged): join-to-first-audio per page and the signal URLs opened.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const [url, tokenA, tokenB, mode] = process.argv.slice(2);
const browserName = process.env.PARLOR_BROWSER || 'chromium';
const withVideo = mode === 'video';
// 'tcp': chromium may not use UDP at all, so media must flow over ICE-TCP.
const tcpOnly = mode === 'tcp';
const files = {
  '/': [path.join(here, 'page.html'), 'text/html'],
  '/livekit-client.umd.js': [path.join(here, 'node_modules/livekit-client/dist/livekit-client.umd.js'), 'text/javascript'],
};
const server = http.createServer((req, res) => {
  const f = files[req.url.split('?')[0]];
  if (!f) { res.writeHead(404); res.end(); return; }
  res.writeHead(200, { 'content-type': f[1] });
  fs.createReadStream(f[0]).pipe(res);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
// PARLOR_SIGNAL=v0: the pages use the v0 signal path (for before/after comparisons).
const pageUrl = `http://127.0.0.1:${server.address().port}/${process.env.PARLOR_SIGNAL === 'v0' ? '?v0' : ''}`;

// Both drivers' pages answer goto/evaluate(fn, arg)/on('console') alike; only launching differs.
async function launch() {
  if (browserName === 'firefox') {
    const { default: puppeteer } = await import('puppeteer-core');
    const b = await puppeteer.launch({
      browser: 'firefox',
      executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr',
      headless: true,
      extraPrefsFirefox: {
        'media.navigator.streams.fake': true,
        'media.navigator.permission.disabled': true,
        'media.autoplay.default': 0,
        'media.autoplay.blocking_policy': 0,
        // Real host addresses in candidates (no mDNS names), no STUN/TURN defaults.
        'media.peerconnection.ice.obfuscate_host_addresses': false,
        'media.peerconnection.ice.default_address_only': false,
        // Two tabs in one window: the background one must not have its timers throttled.
        'dom.min_background_timeout_value': 4,
        'dom.timeout.enable_budget_throttling': false,
        'network.captive-portal-service.enabled': false,
        'browser.safebrowsing.update.enabled': false,
        'app.update.enabled': false,
      },
    });
    return { newPage: () => b.newPage(), close: () => b.close(), version: await b.version() };
  }
  const { chromium } = await import('playwright-core');
  const b = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--disable-background-networking', '--disable-component-update',
      '--no-first-run', '--disable-quic', '--autoplay-policy=no-user-gesture-required',
      ...(tcpOnly ? ['--webrtc-ip-handling-policy=disable_non_proxied_udp', '--force-webrtc-ip-handling-policy'] : [])],
  });
  const ctx = await b.newContext({ permissions: ['microphone', 'camera'] });
  return { newPage: () => ctx.newPage(), close: () => b.close(), version: b.version() };
}

const browser = await launch();
const logs = [[], []];
const result = { ok: false, browser: browserName + ' ' + browser.version, pages: [] };
const timeout = (ms, what) => new Promise((_, rej) => setTimeout(() => rej(new Error('timeout: ' + what)), ms));
try {
  const pages = [await browser.newPage(), await browser.newPage()];
  pages.forEach((p, i) => p.on('console', (m) => logs[i].push(m.type() + ': ' + m.text())));
  for (const p of pages) await p.goto(pageUrl);
  await Promise.race([
    Promise.all(pages.map((p, i) => p.evaluate(([u, t, v]) => window.runRoom(u, t, v), [url, i === 0 ? tokenA : tokenB, withVideo]))),
    timeout(30000, 'connect+publish'),
  ]);
  const wantKinds = withVideo ? ['audio', 'video'] : ['audio'];
  const deadline = Date.now() + 30000;
  let first = null;
  let ok = false;
  let identities = [];
  while (Date.now() < deadline) {
    const subs = await Promise.all(pages.map((p) => p.evaluate(() => window.parlor.subscribed)));
    const allSubscribed = subs.every((s) => wantKinds.every((k) => s.some((x) => x.kind === k)));
    if (allSubscribed) {
      const stats = await Promise.all(pages.map((p) => p.evaluate(() => window.inboundStats())));
      if (!first) { first = stats; await new Promise((r) => setTimeout(r, 2000)); continue; }
      const grew = stats.every((s, i) => s.audioBytes > first[i].audioBytes
        && (!withVideo || (s.videoFramesDecoded > first[i].videoFramesDecoded && s.videoFramesDecoded > 0)));
      result.pages = stats.map((s, i) => ({ first: first[i], last: s, subscribed: subs[i] }));
      if (grew) { ok = true; break; }
      first = stats;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  if (ok) {
    // Data packets: each page sends one reliable message; the other must receive it from the sender.
    await pages[0].evaluate(() => window.sendData('hello from a'));
    await pages[1].evaluate(() => window.sendData('hello from b'));
    const until = Date.now() + 10000;
    let data = [[], []];
    while (Date.now() < until) {
      data = await Promise.all(pages.map((p) => p.evaluate(() => window.parlor.data)));
      if (data[0].length > 0 && data[1].length > 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    result.data = data;
    result.speakers = await Promise.all(pages.map((p) => p.evaluate(() => window.parlor.speakers)));
    identities = await Promise.all(pages.map((p) => p.evaluate(() => window.room.localParticipant.identity)));
    ok = data[1].some((d) => d.text === 'hello from a' && d.from === identities[0] && d.topic === 'chat')
      && data[0].some((d) => d.text === 'hello from b' && d.from === identities[1])
      // SpeakersChanged (from the ssrc-audio-level extension) reached both pages.
      && result.speakers.every((s) => s.some((list) => list.some((id) => identities.includes(id))));
  }
  if (ok && withVideo) {
    // Per-subscriber simulcast: page B asks for the LOW layer of A's video; only B's stream changes.
    const widthOf = async (i) => (await pages[i].evaluate(() => window.inboundStats())).frameWidth;
    const before = [await widthOf(0), await widthOf(1)];
    await pages[1].evaluate(() => window.setRemoteVideoQuality('low'));
    let after = before;
    const until = Date.now() + 15000;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 500));
      after = [await widthOf(0), await widthOf(1)];
      if (after[1] < before[1]) break;
    }
    const layers = await pages[0].evaluate(() => window.outboundLayers());
    result.publisherDetail = await Promise.all(pages.map((p) => p.evaluate(() => window.outboundDetail())));
    result.simulcast = { before, after, publisherLayers: layers };
    const widths = new Set(Object.values(layers));
    if (widths.size >= 2 && before[1] > Math.min(...widths)) {
      // B switched down; A (who asked for nothing) kept its layer.
      ok = after[1] < before[1] && after[0] >= before[0];
    } else {
      // The publisher sends a single resolution right now (CPU/bandwidth adaptation): nothing to switch.
      result.simulcast.skipped = 'publisher sent one layer';
    }
  }
  const events = (i) => pages[i].evaluate(() => window.parlor.events);
  const waitEvent = async (i, ev, ms) => {
    const t = Date.now();
    while (Date.now() - t < ms) {
      if ((await events(i)).includes(ev)) return Date.now() - t;
      await new Promise((r) => setTimeout(r, 100));
    }
    return null;
  };
  if (ok) {
    // Mute: A mutes its microphone, B's publication of it turns muted; unmuted, B hears A again.
    await pages[0].evaluate(() => window.setMic(false));
    const mutedMs = await waitEvent(1, `muted:${identities[0]}:audio`, 10000);
    // Audio energy B received over 1.5 s while A was muted, then after unmuting (reported only).
    const sample = () => pages[1].evaluate(() => window.inboundStats());
    const m0 = await sample();
    await new Promise((r) => setTimeout(r, 1500));
    const m1 = await sample();
    await pages[0].evaluate(() => window.setMic(true));
    const unmutedMs = await waitEvent(1, `unmuted:${identities[0]}:audio`, 10000);
    const u0 = await sample();
    await new Promise((r) => setTimeout(r, 1500));
    const u1 = await sample();
    result.mute = { mutedMs, unmutedMs, audioBytesAfterUnmute: [u0.audioBytes, u1.audioBytes],
      energyWhileMuted: m1.audioEnergy - m0.audioEnergy, energyAfterUnmute: u1.audioEnergy - u0.audioEnergy };
    ok = mutedMs !== null && unmutedMs !== null && u1.audioBytes > u0.audioBytes;
  }
  // Reported before A leaves (its stats go with it).
  result.connectMs = await Promise.all(pages.map((p) => p.evaluate(() => window.parlor.connectMs)));
  result.joinToFirstAudioMs = await Promise.all(pages.map((p) => p.evaluate(() => window.parlor.joinToFirstAudioMs)));
  result.signal_urls = await Promise.all(pages.map((p) => p.evaluate(() => window.parlor.signalUrls)));
  result.signal_opened = await Promise.all(pages.map((p) => p.evaluate(() => window.parlor.signalOpened)));
  result.signal_version = result.signal_opened.map((u) => (u.some((x) => x.endsWith('/rtc/v1')) ? 'v1' : 'v0'));
  if (ok) {
    // Leave: A disconnects; B sees ParticipantDisconnected for A.
    await pages[0].evaluate(() => window.leave());
    const leftMs = await waitEvent(1, `left:${identities[0]}`, 10000);
    result.leave = { leftMs };
    ok = leftMs !== null;
  }
  result.events = await Promise.all(pages.map((p) => p.evaluate(() => window.parlor.events)));
  if (!ok) result.publisherDetail = await Promise.all(pages.map((p) => p.evaluate(() => window.outboundDetail()).catch(() => null)));
  result.ok = ok;
  if (!ok) result.logs = logs.map((l) => l.slice(-30));
} catch (e) {
  result.error = String(e && e.stack || e);
  result.logs = logs.map((l) => l.slice(-40));
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
