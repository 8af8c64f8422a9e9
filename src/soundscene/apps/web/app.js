// soundscene web page: upload or record a recording, show the scene, probabilities and timeline.
// Plain JavaScript, no dependencies; every server string is inserted as text, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2f6fdb", "#e8590c", "#2b8a3e", "#c92a2a", "#7048e8", "#0b7285", "#b8860b", "#a61e4d",
                   "#5c940d", "#364fc7", "#8d5524", "#495057"];

  const state = { classes: [], maxUploadBytes: 50e6, file: null, busy: false, lastRecord: null };
  const SILENCE = "#b8b8b8";

  // ---- helpers -----------------------------------------------------------------------------------------
  function colour(label) {
    if (label === null || label === undefined) return SILENCE; // a run of silent windows: no scene
    let k = state.classes.indexOf(label);
    if (k < 0) {
      state.classes.push(label);
      k = state.classes.length - 1;
    }
    return k < PALETTE.length ? PALETTE[k] : `hsl(${(k * 137.508) % 360} 60% 42%)`;
  }

  function inkFor(hex) {
    const m = /^#([0-9a-f]{6})$/i.exec(hex);
    if (!m) return "#fff";
    const n = parseInt(m[1], 16);
    const lum = 0.2126 * ((n >> 16) & 255) + 0.7152 * ((n >> 8) & 255) + 0.0722 * (n & 255);
    return lum > 150 ? "#111" : "#fff";
  }

  function el(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    // styles go through the CSSOM: the page's Content-Security-Policy refuses style attributes
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "style") node.style.cssText = v;
      else node.setAttribute(k, v);
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function pretty(label) {
    return label === null || label === undefined ? "silence" : String(label).replace(/_/g, " ");
  }

  function percent(p, digits = 1) {
    return p === null || p === undefined ? "\u2013" : `${(100 * p).toFixed(digits)}\u00a0%`;
  }

  function bytes(n) {
    if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)} MB`;
    if (n >= 1e3) return `${(n / 1e3).toFixed(0)} kB`;
    return `${n} bytes`;
  }

  function clock(seconds, withTenths = false) {
    const s = Math.max(0, seconds);
    const m = Math.floor(s / 60);
    const rest = s - 60 * m;
    const sec = withTenths ? rest.toFixed(1).padStart(4, "0") : String(Math.floor(rest)).padStart(2, "0");
    return `${m}:${sec}`;
  }

  function duration(seconds) {
    if (!Number.isFinite(seconds)) return "–";
    return seconds < 60 ? `${seconds.toFixed(1)} s` : clock(seconds);
  }

  // ---- model and limits --------------------------------------------------------------------------------
  async function loadModel() {
    try {
      const [model, limits] = await Promise.all([
        fetch("/v1/model").then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`)))),
        fetch("/v1/limits").then((r) => (r.ok ? r.json() : {})).catch(() => ({})),
      ]);
      state.classes = Array.isArray(model.classes) ? model.classes.slice() : [];
      if (limits && Number.isFinite(limits.max_upload_bytes)) state.maxUploadBytes = limits.max_upload_bytes;
      $("limit").textContent = bytes(state.maxUploadBytes);
      const info = $("model-info");
      info.textContent = "";
      const name = (model.model && model.model.name) || "model";
      info.append("Model ", el("strong", {}, name));
      const bits = [`${state.classes.length} scenes`];
      if (model.sample_rate) bits.push(`${model.sample_rate / 1000} kHz`);
      if (Number.isFinite(model.window_seconds)) bits.push(`${model.window_seconds} s windows`);
      const version = model.model && (model.model.soundscene_version || model.model.version);
      if (version) bits.push(`soundscene ${version}`);
      info.append(` · ${bits.join(" · ")}`);
      const chips = $("class-chips");
      chips.textContent = "";
      for (const c of state.classes) {
        const chip = el("span", { class: "chip" });
        chip.append(el("span", { class: "swatch", style: `background:${colour(c)}` }), pretty(c));
        chips.append(chip);
      }
    } catch (err) {
      $("model-info").textContent = `The model could not be loaded (${err.message}).`;
    }
  }

  // ---- views -------------------------------------------------------------------------------------------
  function show(view) {
    $("placeholder").hidden = view !== "empty";
    $("busy").hidden = view !== "busy";
    $("outcome").hidden = view !== "done";
    if (view !== "error") $("error").hidden = true;
    $("result").dataset.state = view;
  }

  function showError(message, title = "Could not classify") {
    show("error");
    $("error-title").textContent = title;
    $("error-text").textContent = message;
    $("error").hidden = false;
    $("placeholder").hidden = !!state.lastRecord;
    if (state.lastRecord) $("outcome").hidden = true;
  }

  function setBusy(text, fraction) {
    show("busy");
    $("busy-text").textContent = text;
    $("progress-fill").style.width = fraction === undefined ? "100%" : `${Math.round(100 * fraction)}%`;
  }

  function setControlsDisabled(disabled) {
    state.busy = disabled;
    $("classify-btn").disabled = disabled || !state.file;
    $("choose-btn").disabled = disabled;
  }

  // ---- choosing and uploading ----------------------------------------------------------------------------
  function choose(file) {
    if (!file) return;
    state.file = file;
    $("chosen").hidden = false;
    $("chosen-name").textContent = file.name || "recording";
    $("chosen-size").textContent = bytes(file.size);
    $("classify-btn").disabled = state.busy;
  }

  function classify(file, name) {
    if (state.busy) return;
    if (file.size > state.maxUploadBytes) {
      showError(`${name} is ${bytes(file.size)}; the server accepts at most ${bytes(state.maxUploadBytes)}.`);
      return;
    }
    const form = new FormData();
    form.append("file", file, name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/classify");
    xhr.setRequestHeader("Accept", "application/json");
    setControlsDisabled(true);
    setBusy("Uploading…", 0);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) setBusy(`Uploading… ${Math.round((100 * e.loaded) / e.total)} %`, e.loaded / e.total);
    };
    xhr.upload.onload = () => setBusy("Analysing…");
    xhr.onload = () => {
      setControlsDisabled(false);
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (_) {
        body = null;
      }
      if (xhr.status === 200 && body && (typeof body.label === "string" || body.label === null)) {
        render(body);
      } else {
        const message = body && typeof body.error === "string" ? body.error : `The server answered HTTP ${xhr.status}.`;
        showError(message, `Could not classify (HTTP ${xhr.status})`);
      }
    };
    xhr.onerror = () => {
      setControlsDisabled(false);
      showError("The connection to the server failed: is it still running, and is the file under the size limit?");
    };
    xhr.send(form);
  }

  // ---- the result ------------------------------------------------------------------------------------------
  function render(record) {
    state.lastRecord = record;
    show("done");
    const label = record.label;
    $("result-label").textContent = pretty(label);
    $("result").dataset.label = label;
    $("result-file").textContent = record.path || "";
    const conf = Number(record.confidence) || 0;
    const silent = record.label === null; // every window below the silence threshold: no scene
    $("confidence").textContent = silent ? "\u2013" : `${Math.round(100 * conf)}%`;
    $("confidence-block").setAttribute("aria-label", silent ? "no confidence: silence" : `confidence ${percent(conf)}`);
    $("ring-fg").style.strokeDasharray = `${(100 * conf).toFixed(1)} 100`;
    $("ring-fg").style.stroke = colour(label);
    $("fact-duration").textContent = duration(record.duration_seconds);
    $("fact-level").textContent = Number.isFinite(record.level_dbfs)
      ? `${record.level_dbfs.toFixed(1).replace("-", "\u2212")} dBFS` : "–";
    renderLevels(record.levels);
    const windows = Array.isArray(record.windows) ? record.windows : [];
    const segments = Array.isArray(record.segments) ? record.segments : [];
    $("fact-windows").textContent = windows.length ? String(windows.length) : "–";
    $("warning").hidden = !record.warning;
    $("warning-text").textContent = record.warning || "";
    renderBars(record.probabilities || {}, label);
    const long = windows.length > 1 || segments.length > 1;
    $("timeline-block").hidden = !long;
    if (long) renderTimeline(record);
    $("result").focus({ preventScroll: true });
  }

  // levels: dB SPL when the service was started with --calibration-db, else dB re full scale, said so
  function renderLevels(levels) {
    const db = (v) => (Number.isFinite(v) ? v.toFixed(1).replace("-", "\u2212") : "\u2013");
    const calibrated = Boolean(levels && levels.calibrated);
    const unit = calibrated ? "dB(A)" : "dBFS(A)";
    const note = calibrated ? "sound pressure level" : "uncalibrated: re full scale";
    const fill = (id, text) => {
      $(id).textContent = text;
      if (levels) $(id).append(el("span", { class: "fact-note" }, note));
    };
    fill("fact-laeq", levels && Number.isFinite(levels.LAeq) ? `${db(levels.LAeq)} ${unit}` : "\u2013");
    fill("fact-spread", levels && Number.isFinite(levels.LA10) ? `${db(levels.LA10)} / ${db(levels.LA90)}` : "\u2013");
  }

  function renderBars(probabilities, top) {
    const list = $("bars");
    list.textContent = "";
    const entries = Object.entries(probabilities).sort((a, b) => b[1] - a[1]);
    if (!entries.length) list.append(el("li", { class: "bar" }, "No scene: the recording is silent."));
    for (const [name, p] of entries) {
      const row = el("li", { class: name === top ? "bar top" : "bar" });
      const nameCell = el("span", { class: "bar-name" });
      nameCell.append(el("span", { class: "swatch", style: `background:${colour(name)}`, "aria-hidden": "true" }),
                      el("span", {}, pretty(name)));
      const track = el("span", { class: "bar-track", "aria-hidden": "true" });
      track.append(el("span", { class: "bar-fill", style: `display:block;width:${(100 * p).toFixed(2)}%;background:${colour(name)}` }));
      row.append(nameCell, track, el("span", { class: "bar-value" }, percent(p)));
      list.append(row);
    }
  }

  function niceStep(total, maxTicks) {
    const steps = [0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
    for (const s of steps) if (total / s <= maxTicks) return s;
    return Math.ceil(total / maxTicks / 3600) * 3600;
  }

  function tickLabel(t, total) {
    if (total < 60) return Number.isInteger(t) ? `${t} s` : `${t.toFixed(1)} s`;
    return clock(t);
  }

  function renderTimeline(record) {
    const host = $("timeline");
    host.textContent = "";
    const windows = record.windows || [];
    const segments = record.segments || [];
    const ends = [...windows.map((w) => w.end), ...segments.map((s) => s.end), record.duration_seconds || 0];
    const total = Math.max(...ends.filter(Number.isFinite), 1e-3);
    const width = Math.max(280, Math.round(host.clientWidth || 600));
    const gutter = 40;
    const plot = width - gutter - 4;
    const x = (t) => gutter + (plot * Math.min(Math.max(t, 0), total)) / total;
    const segTop = 0, segH = 34, winTop = 48, winH = 60, axisY = winTop + winH + 6, height = axisY + 22;
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, "aria-hidden": "true" });

    // segments
    root.append(svg("text", { x: 0, y: segTop + segH / 2 + 4, class: "tl-row-label" }, "scene"));
    for (const s of segments) {
      const x0 = x(s.start), x1 = x(s.end);
      const g = svg("g");
      const fill = colour(s.label);
      g.append(svg("rect", { x: x0, y: segTop, width: Math.max(1, x1 - x0 - 1.5), height: segH, rx: 5, fill }));
      g.append(svg("title", {}, `${clock(s.start, true)}–${clock(s.end, true)}  ${pretty(s.label)} (${percent(s.confidence)})`));
      const full = s.label === null ? pretty(s.label) : `${pretty(s.label)} ${Math.round(100 * s.confidence)}%`;
      const room = x1 - x0 - 14;
      const text = room >= full.length * 7 ? full : room >= pretty(s.label).length * 7 ? pretty(s.label) : "";
      if (text) {
        const t = svg("text", { x: x0 + 8, y: segTop + segH / 2 + 4, class: "tl-seg-label" }, text);
        t.style.fill = inkFor(fill);
        g.append(t);
      }
      root.append(g);
    }

    // per-window top probability
    for (const frac of [0.5, 1]) {
      const y = winTop + winH * (1 - frac);
      root.append(svg("line", { x1: gutter, x2: width - 4, y1: y, y2: y, class: "tl-grid" }));
      root.append(svg("text", { x: 0, y: y + 4, class: "tl-row-label" }, `${frac * 100}%`));
    }
    const starts = windows.map((w) => w.start);
    windows.forEach((w, k) => {
      const probs = Object.entries(w.probabilities || {});
      if (!probs.length) return;
      const [best, p] = probs.reduce((a, b) => (b[1] > a[1] ? b : a));
      // each window's bar spans its own hop (windows may overlap), so bars sit side by side
      const next = k + 1 < starts.length ? starts[k + 1] : w.end;
      const x0 = x(w.start), x1 = x(Math.min(next, w.end));
      const h = Math.max(1, winH * p);
      const r = svg("rect", { x: x0, y: winTop + winH - h, width: Math.max(1, x1 - x0 - 1), height: h, rx: 2, fill: colour(best) });
      r.append(svg("title", {}, `${clock(w.start, true)}–${clock(w.end, true)}  ${pretty(best)} ${percent(p)}`));
      root.append(r);
    });

    // time axis
    root.append(svg("line", { x1: gutter, x2: width - 4, y1: axisY, y2: axisY, class: "tl-axis" }));
    const step = niceStep(total, Math.max(2, Math.floor(plot / 70)));
    for (let t = 0; t <= total + 1e-9; t += step) {
      root.append(svg("line", { x1: x(t), x2: x(t), y1: axisY, y2: axisY + 4, class: "tl-axis" }));
      const anchor = t === 0 ? "start" : x(t) > width - 30 ? "end" : "middle";
      root.append(svg("text", { x: x(t), y: axisY + 17, "text-anchor": anchor, class: "tl-tick" }, tickLabel(t, total)));
    }
    host.append(root);
    const summary = segments.map((s) => `${pretty(s.label)} from ${clock(s.start)} to ${clock(s.end)}`).join("; ");
    host.setAttribute("aria-label", `Timeline: ${summary}`);

    // legend and table
    const legend = $("legend");
    legend.textContent = "";
    const seen = new Set([...segments.map((s) => s.label), ...windows.map((w) => {
      const e = Object.entries(w.probabilities || {});
      return e.length ? e.reduce((a, b) => (b[1] > a[1] ? b : a))[0] : null;
    }).filter(Boolean)]);
    for (const c of state.classes.filter((c) => seen.has(c))) {
      const li = el("li");
      li.append(el("span", { class: "swatch", style: `background:${colour(c)}`, "aria-hidden": "true" }), pretty(c));
      legend.append(li);
    }
    const body = $("segments-body");
    body.textContent = "";
    for (const s of segments) {
      const tr = el("tr");
      tr.append(el("td", {}, clock(s.start, true)), el("td", {}, clock(s.end, true)), el("td", {}, pretty(s.label)),
                el("td", {}, percent(s.confidence)));
      body.append(tr);
    }
  }

  // ---- recording -------------------------------------------------------------------------------------------
  const rec = { active: false, ctx: null, stream: null, node: null, source: null, chunks: [], samples: 0, timer: 0, started: 0 };

  async function startRecording() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError("The browser offers the microphone only to secure pages: open this page as http://localhost:PORT/ " +
                "or over https.", "Microphone unavailable");
      return;
    }
    try {
      rec.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (err) {
      showError(`The microphone could not be opened (${err.name || err.message}).`, "Microphone unavailable");
      return;
    }
    const Ctx = window.AudioContext || window.webkitAudioContext;
    rec.ctx = new Ctx();
    rec.source = rec.ctx.createMediaStreamSource(rec.stream);
    rec.chunks = [];
    rec.samples = 0;
    const onBlock = (block) => {
      rec.chunks.push(block);
      rec.samples += block.length;
      let sum = 0;
      for (let i = 0; i < block.length; i++) sum += block[i] * block[i];
      const db = 10 * Math.log10(sum / Math.max(1, block.length) + 1e-12);
      $("meter-fill").style.width = `${Math.max(0, Math.min(100, ((db + 60) / 60) * 100))}%`;
      if (rec.samples / rec.ctx.sampleRate >= maxRecordSeconds()) stopRecording();
    };
    if (rec.ctx.audioWorklet && window.AudioWorkletNode) {
      await rec.ctx.audioWorklet.addModule("/static/recorder-worklet.js");
      rec.node = new AudioWorkletNode(rec.ctx, "soundscene-capture");
      rec.node.port.onmessage = (e) => {
        if (e.data instanceof Float32Array) onBlock(e.data);
        else if (e.data === "flushed" && rec.onFlushed) rec.onFlushed();
      };
    } else {
      rec.node = rec.ctx.createScriptProcessor(4096, 1, 1);
      rec.node.onaudioprocess = (e) => onBlock(new Float32Array(e.inputBuffer.getChannelData(0)));
    }
    rec.source.connect(rec.node);
    rec.node.connect(rec.ctx.destination); // keeps the graph pulling; the node outputs silence
    rec.active = true;
    rec.started = performance.now();
    $("record-btn").setAttribute("aria-pressed", "true");
    $("record-label").textContent = "Stop and classify";
    $("rec-status").hidden = false;
    $("rec-time").textContent = "0:00";
    $("choose-btn").disabled = true;
    $("classify-btn").disabled = true;
    rec.timer = setInterval(() => {
      $("rec-time").textContent = clock((performance.now() - rec.started) / 1000);
    }, 250);
  }

  function maxRecordSeconds() {
    const rate = rec.ctx ? rec.ctx.sampleRate : 48000;
    return Math.min(600, Math.floor((state.maxUploadBytes - 1024) / (2 * rate)));
  }

  async function stopRecording() {
    if (!rec.active) return;
    rec.active = false;
    clearInterval(rec.timer);
    if (rec.node && rec.node.port) {
      await new Promise((resolve) => {
        rec.onFlushed = resolve;
        rec.node.port.postMessage("flush");
        setTimeout(resolve, 500);
      });
    }
    rec.source.disconnect();
    rec.node.disconnect();
    rec.stream.getTracks().forEach((t) => t.stop());
    const rate = rec.ctx.sampleRate;
    await rec.ctx.close();
    $("record-btn").setAttribute("aria-pressed", "false");
    $("record-label").textContent = "Record from the microphone";
    $("rec-status").hidden = true;
    $("meter-fill").style.width = "0";
    $("choose-btn").disabled = false;
    const wav = encodeWav(rec.chunks, rec.samples, rate);
    rec.chunks = [];
    const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
    const file = new File([wav], `recording-${stamp}.wav`, { type: "audio/wav" });
    const preview = $("preview");
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    choose(file);
    classify(file, file.name);
  }

  /** 16-bit PCM mono WAV (what libsndfile reads; browsers' own recorders give WebM/Opus, which it does not). */
  function encodeWav(chunks, n, rate) {
    const buffer = new ArrayBuffer(44 + 2 * n);
    const view = new DataView(buffer);
    const ascii = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
    ascii(0, "RIFF"); view.setUint32(4, 36 + 2 * n, true); ascii(8, "WAVE");
    ascii(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
    view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true);
    view.setUint16(34, 16, true); ascii(36, "data"); view.setUint32(40, 2 * n, true);
    let offset = 44;
    for (const chunk of chunks) {
      for (let i = 0; i < chunk.length; i++) {
        const s = Math.max(-1, Math.min(1, chunk[i]));
        view.setInt16(offset, Math.round(s < 0 ? s * 32768 : s * 32767), true);
        offset += 2;
      }
    }
    return buffer;
  }

  // ---- wiring ----------------------------------------------------------------------------------------------
  function init() {
    const input = $("file-input");
    $("choose-btn").addEventListener("click", () => input.click());
    input.addEventListener("change", () => choose(input.files[0]));
    $("classify-btn").addEventListener("click", () => {
      if (state.file) classify(state.file, state.file.name || "recording.wav");
    });
    $("record-btn").addEventListener("click", () => (rec.active ? stopRecording() : startRecording()));

    const drop = $("drop");
    let depth = 0;
    drop.addEventListener("dragenter", (e) => { e.preventDefault(); depth++; drop.classList.add("dragging"); });
    drop.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; drop.classList.remove("dragging"); } });
    drop.addEventListener("dragover", (e) => { e.preventDefault(); e.dataTransfer.dropEffect = "copy"; });
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      depth = 0;
      drop.classList.remove("dragging");
      const file = e.dataTransfer.files && e.dataTransfer.files[0];
      if (file) choose(file);
    });
    // a file dropped anywhere else must not make the browser navigate away from the page
    window.addEventListener("dragover", (e) => e.preventDefault());
    window.addEventListener("drop", (e) => e.preventDefault());

    let resizeTimer = 0;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        if (state.lastRecord && !$("timeline-block").hidden) renderTimeline(state.lastRecord);
      }, 120);
    });
    loadModel();
  }

  init();
})();
