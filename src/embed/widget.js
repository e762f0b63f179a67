/* Parlor voice-assistant widget. Served by Parlor at /widget.js; loads the unmodified livekit-client
 * bundle from the same Parlor (no CDN). Embed:
 *
 *   <script src="https://your-parlor/widget.js" data-key="pk_live_…" data-assistant="asst_…" async></script>
 *
 * Optional attributes: data-label (button text), data-metadata (JSON object sent with the embed
 * token request), data-target (CSS selector: render inline there instead of floating).
 * Or from code: ParlorWidget.mount({ key, assistant, target, label, metadata, server }).
 * The flow is seed 001's: POST /api/v1/embed/token → new Room() → room.connect(url, token) →
 * setMicrophoneEnabled(true) → the assistant's audio on TrackSubscribed; hanging up is
 * room.disconnect() (the server then completes and bills the call).
 */
(() => {
  'use strict';
  if (window.ParlorWidget) return;
  const LIVEKIT_URL = '{{LIVEKIT_URL}}';
  const script = document.currentScript;
  const defaultServer = script ? new URL(script.src, location.href).origin : location.origin;

  // What each API error code means to a visitor (seed 001's table, plus Parlor's extra codes).
  const MESSAGES = {
    INVALID_REQUEST: 'The request was invalid. Please contact the site owner.',
    UNAUTHORIZED: 'Authentication failed. Please reload the page.',
    DOMAIN_NOT_ALLOWED: 'This site is not allowed to use this voice assistant.',
    ASSISTANT_NOT_FOUND: 'The assistant was not found. Please contact the site owner.',
    SERVER_ERROR: 'Server error. Please try again later.',
    RATE_LIMIT_EXCEEDED: 'Too many calls right now. Please try again in a minute.',
    INSUFFICIENT_CREDITS: 'The assistant is not available right now.',
    MODEL_NOT_AVAILABLE: 'The assistant is not available right now.',
    CONNECTION_ERROR: 'Could not connect. Check your internet connection.',
    MICROPHONE_ERROR: 'Microphone access was denied. Allow the microphone in your browser settings.',
    DISCONNECTED: 'The call was disconnected.',
    UNKNOWN_ERROR: 'An unexpected error occurred. Please try again later.',
  };
  const STATUS_FOR_CODE = { 400: 'INVALID_REQUEST', 401: 'UNAUTHORIZED', 403: 'DOMAIN_NOT_ALLOWED',
    404: 'ASSISTANT_NOT_FOUND', 500: 'SERVER_ERROR' };

  let sdk = null;
  function loadSdk(server) {
    if (window.LivekitClient) return Promise.resolve(window.LivekitClient);
    if (!sdk) {
      sdk = new Promise((resolve, reject) => {
        const s = document.createElement('script');
        s.src = server + LIVEKIT_URL;
        s.onload = () => (window.LivekitClient ? resolve(window.LivekitClient) : reject(new Error('livekit-client did not load')));
        s.onerror = () => { sdk = null; reject(new Error('livekit-client could not be loaded from ' + server)); };
        document.head.appendChild(s);
      });
    }
    return sdk;
  }

  const CSS = `
    :host{all:initial;font:14px/1.4 system-ui,sans-serif;color:#1d2733}
    .wrap{display:flex;flex-direction:column;align-items:flex-end;gap:.5rem}
    .float{position:fixed;right:1rem;bottom:1rem;z-index:2147483000;max-width:calc(100vw - 2rem)}
    button{font:inherit;border:0;border-radius:999px;padding:.6rem 1.1rem;cursor:pointer;background:#2f5d8a;color:#fff}
    button[disabled]{opacity:.6;cursor:default}
    button.hang{background:#b3261e}
    button.mic{background:#fff;color:#2f5d8a;border:1px solid #2f5d8a}
    button.mic[aria-pressed=false]{background:#eef1f4;color:#8a1f1f;border-color:#8a1f1f}
    .panel{background:#fff;border:1px solid #cfd6dd;border-radius:12px;padding:.75rem;width:min(20rem,calc(100vw - 2rem));box-shadow:0 4px 18px rgba(0,0,0,.12)}
    .panel[hidden]{display:none}
    .row{display:flex;gap:.5rem;align-items:center;margin:.35rem 0}
    .status{font-weight:600}
    .meter{flex:1;height:.5rem;background:#eef1f4;border-radius:4px;overflow:hidden}
    .meter>i{display:block;height:100%;width:0;background:#1e7a3c;transition:width 80ms linear}
    .who{width:5.5rem;font-size:12px;color:#52606d}
    .captions{max-height:10rem;overflow:auto;font-size:13px;background:#f4f6f8;border-radius:8px;padding:.4rem .5rem;margin:.4rem 0}
    .captions:empty{display:none}
    .captions p{margin:.15rem 0}
    .captions b{font-weight:600}
    .error{color:#8a1f1f;background:#fdecec;border-radius:8px;padding:.4rem .5rem;font-size:13px}
    .error:empty{display:none}`;

  function mount(opts) {
    opts = opts || {};
    const o = { key: opts.key, assistant: opts.assistant, target: opts.target,
      label: opts.label || 'Talk to the assistant', metadata: opts.metadata || {},
      server: (opts.server || defaultServer).replace(/\/$/, '') };
    if (!o.key || !o.assistant) throw new Error('ParlorWidget: key and assistant are required');
    const host = document.createElement('div');
    host.className = 'parlor-widget';
    const target = o.target ? document.querySelector(o.target) : null;
    (target || document.body).appendChild(host);
    const root = host.attachShadow({ mode: 'open' });
    root.innerHTML = `<style>${CSS}</style>
      <div class="wrap ${target ? '' : 'float'}">
        <div class="panel" hidden>
          <div class="row"><span class="status" data-state="idle">Not connected</span></div>
          <div class="row"><span class="who">You</span><span class="meter"><i data-meter="mic"></i></span></div>
          <div class="row"><span class="who">Assistant</span><span class="meter"><i data-meter="assistant"></i></span></div>
          <div class="captions" aria-live="polite"></div>
          <div class="error" role="alert"></div>
          <div class="row"><button class="mic" aria-pressed="true">Mute</button><button class="hang">Hang up</button></div>
        </div>
        <button class="call"></button>
      </div>`;
    const $ = (sel) => root.querySelector(sel);
    const ui = { panel: $('.panel'), status: $('.status'), captions: $('.captions'), error: $('.error'),
      mic: $('.mic'), hang: $('.hang'), call: $('.call'),
      meters: { mic: $('[data-meter=mic]'), assistant: $('[data-meter=assistant]') } };
    ui.call.textContent = o.label;

    let room = null;
    let intentional = false;
    let audioCtx = null;
    const levels = { mic: 0, assistant: 0 };
    const analysers = {};
    const segments = new Map(); // caption id → element
    let timer = null;

    const setStatus = (state, text) => { ui.status.dataset.state = state; ui.status.textContent = text; host.dataset.state = state; };
    const showError = (code, detail) => {
      const msg = MESSAGES[code] || MESSAGES.UNKNOWN_ERROR;
      ui.error.textContent = msg;
      ui.error.dataset.code = code;
      host.dataset.error = code;
      if (detail) console.warn('[parlor-widget]', code, detail);
    };

    // Real levels from Web Audio: RMS of each track's samples, -60..0 dBFS mapped to 0..100.
    function analyse(which, mediaStreamTrack) {
      try {
        audioCtx = audioCtx || new (window.AudioContext || window.webkitAudioContext)();
        if (audioCtx.state === 'suspended') audioCtx.resume();
        const src = audioCtx.createMediaStreamSource(new MediaStream([mediaStreamTrack]));
        const a = audioCtx.createAnalyser();
        a.fftSize = 1024;
        src.connect(a);
        analysers[which] = { a, buf: new Float32Array(a.fftSize), src };
      } catch (e) { console.warn('[parlor-widget] level meter unavailable', e); }
      if (!timer) timer = setInterval(tick, 100);
    }
    function tick() {
      for (const which of ['mic', 'assistant']) {
        const an = analysers[which];
        let level = 0;
        if (an) {
          an.a.getFloatTimeDomainData(an.buf);
          let sum = 0;
          for (let i = 0; i < an.buf.length; i++) sum += an.buf[i] * an.buf[i];
          const rms = Math.sqrt(sum / an.buf.length);
          const db = rms > 0 ? 20 * Math.log10(rms) : -100;
          level = Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
        }
        levels[which] = level;
        ui.meters[which].style.width = level.toFixed(0) + '%';
        host.dataset[which + 'Level'] = level.toFixed(1);
      }
    }

    function caption(id, who, text, final) {
      let p = segments.get(id);
      if (!p) {
        p = document.createElement('p');
        p.innerHTML = '<b></b> <span></span>';
        p.firstChild.textContent = who + ':';
        ui.captions.appendChild(p);
        segments.set(id, p);
      }
      p.lastChild.textContent = text;
      p.dataset.final = final ? 'true' : 'false';
      p.dataset.who = who;
      ui.captions.scrollTop = ui.captions.scrollHeight;
    }

    function reset() {
      clearInterval(timer); timer = null;
      for (const k of Object.keys(analysers)) { try { analysers[k].src.disconnect(); } catch (_) {} delete analysers[k]; }
      levels.mic = levels.assistant = 0; tick();
      root.querySelectorAll('audio').forEach((a) => a.remove());
      ui.call.disabled = false; ui.call.hidden = false;
      room = null;
    }

    async function connect() {
      if (room) return;
      ui.error.textContent = ''; delete host.dataset.error;
      ui.captions.textContent = ''; segments.clear();
      ui.panel.hidden = false; ui.call.disabled = true;
      setStatus('connecting', 'Connecting…');
      let LK;
      try { LK = await loadSdk(o.server); } catch (e) { setStatus('error', 'Not connected'); reset(); return showError('CONNECTION_ERROR', e); }
      let data;
      try {
        const r = await fetch(o.server + '/api/v1/embed/token', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + o.key },
          body: JSON.stringify({ assistantId: o.assistant, metadata: o.metadata }),
        });
        const body = await r.json().catch(() => null);
        if (!r.ok) {
          setStatus('error', 'Not connected'); reset();
          const code = (body && body.error && body.error.code) || STATUS_FOR_CODE[r.status] || 'UNKNOWN_ERROR';
          return showError(code, body && body.error && body.error.message);
        }
        data = body.data;
      } catch (e) { setStatus('error', 'Not connected'); reset(); return showError('CONNECTION_ERROR', e); }
      intentional = false;
      room = new LK.Room({ audioCaptureDefaults: { echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
      host.dataset.callId = data.callId || '';
      room.on(LK.RoomEvent.ConnectionStateChanged, (s) => {
        const text = { connected: 'Connected', connecting: 'Connecting…', reconnecting: 'Reconnecting…', disconnected: 'Not connected' }[s] || s;
        setStatus(s, text);
      });
      room.on(LK.RoomEvent.TrackSubscribed, (track) => {
        if (track.kind !== 'audio') return;
        const el = track.attach();
        el.dataset.parlorAssistant = 'true';
        root.appendChild(el);
        host.dataset.assistantTrack = 'subscribed';
        analyse('assistant', track.mediaStreamTrack);
      });
      room.on(LK.RoomEvent.Disconnected, (reason) => {
        const was = intentional;
        reset();
        setStatus('disconnected', 'Call ended');
        if (!was) showError('DISCONNECTED', reason);
      });
      // Captions: LiveKit transcriptions (the lk.transcription text stream; older servers send
      // Transcription packets, surfaced as TranscriptionReceived).
      const whoOf = (identity) => (room && identity === room.localParticipant.identity ? 'You' : 'Assistant');
      if (typeof room.registerTextStreamHandler === 'function') {
        room.registerTextStreamHandler('lk.transcription', async (reader, participant) => {
          const attrs = (reader.info && reader.info.attributes) || {};
          const id = attrs['lk.segment_id'] || (reader.info && reader.info.id) || String(Math.random());
          const who = whoOf(attrs['lk.transcribed_participant_identity'] || (participant && participant.identity));
          let text = '';
          for await (const chunk of reader) { text += chunk; caption(id, who, text, false); }
          caption(id, who, text, attrs['lk.transcription_final'] !== 'false');
        });
      }
      room.on(LK.RoomEvent.TranscriptionReceived, (segs, participant) => {
        for (const s of segs) caption(s.id, whoOf(participant && participant.identity), s.text, s.final);
      });
      try {
        await room.connect(data.url, data.token);
      } catch (e) { setStatus('error', 'Not connected'); reset(); return showError('CONNECTION_ERROR', e); }
      ui.call.hidden = true;
      try {
        await room.localParticipant.setMicrophoneEnabled(true);
        const pub = room.localParticipant.getTrackPublication(LK.Track.Source.Microphone);
        if (pub && pub.track) analyse('mic', pub.track.mediaStreamTrack);
        ui.mic.setAttribute('aria-pressed', 'true'); ui.mic.textContent = 'Mute';
      } catch (e) { showError('MICROPHONE_ERROR', e); }
    }

    async function toggleMic() {
      if (!room) return false;
      const on = !room.localParticipant.isMicrophoneEnabled;
      await room.localParticipant.setMicrophoneEnabled(on);
      ui.mic.setAttribute('aria-pressed', String(on)); ui.mic.textContent = on ? 'Mute' : 'Unmute';
      return on;
    }

    async function disconnect() {
      if (!room) return;
      intentional = true;
      await room.disconnect();
    }

    ui.call.addEventListener('click', () => { connect(); });
    ui.hang.addEventListener('click', () => { disconnect(); });
    ui.mic.addEventListener('click', () => { toggleMic(); });
    const api = { connect, disconnect, toggleMic, levels: () => Object.assign({}, levels),
      state: () => (room ? room.state : 'disconnected'), element: host };
    host.parlor = api;
    return api;
  }

  window.ParlorWidget = { mount };
  if (script && script.dataset.key && script.dataset.assistant) {
    let metadata = {};
    try { metadata = script.dataset.metadata ? JSON.parse(script.dataset.metadata) : {}; } catch (_) { console.warn('[parlor-widget] data-metadata is not JSON'); }
    const go = () => mount({ key: script.dataset.key, assistant: script.dataset.assistant,
      label: script.dataset.label, target: script.dataset.target, metadata });
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', go); else go();
  }
})();
