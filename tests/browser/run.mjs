// Usage: node run.mjs <ws-url> <token-a> <token-b> [video]
// Opens two pages in headless Debian chromium, each joining the same room with the unmodified
// livekit-client SDK; prints one JSON line with what each page observed. Exit 0 when both pages
// subscribed to the other's tracks and saw inbound bytes (and decoded frames with video) grow.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const [url, tokenA, tokenB, mode] = process.argv.slice(2);
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
const pageUrl = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection', '--disable-background-networking', '--disable-component-update',
    '--no-first-run', '--disable-quic', '--autoplay-policy=no-user-gesture-required',
    ...(tcpOnly ? ['--webrtc-ip-handling-policy=disable_non_proxied_udp', '--force-webrtc-ip-handling-policy'] : [])],
});
const result = { ok: false, pages: [] };
const logs = [[], []];
const timeout = (ms, what) => new Promise((_, rej) => setTimeout(() => rej(new Error('timeout: ' + what)), ms));
try {
  const ctx = await browser.newContext({ permissions: ['microphone', 'camera'] });
  const pages = [await ctx.newPage(), await ctx.newPage()];
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
    const identities = await Promise.all(pages.map((p) => p.evaluate(() => window.room.localParticipant.identity)));
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
