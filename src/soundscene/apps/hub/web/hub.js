// soundscene hub page: the fleet table, the plan, a sensor's day and week, the alerts; live via /v1/live.
// No library, no inline script (the CSP forbids both): the page builds its SVG with the DOM.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#3b82c4", "#e07b39", "#4c9f70", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c3c",
                 "#30a2b0", "#d4a72c"];
const SILENCE = "#d9dde2";
const state = { sensors: new Map(), selected: null, sitePlan: false, classes: [], detailTimer: null };

function el(tag, attrs = {}, text = null) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function colour(label) {
  if (label === null || label === undefined) return SILENCE;
  let index = state.classes.indexOf(label);
  if (index < 0) { state.classes.push(label); state.classes.sort(); index = state.classes.indexOf(label); }
  return PALETTE[index % PALETTE.length];
}

function sceneName(label) { return label === null || label === undefined ? "silence" : label.replace(/_/g, " "); }
function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 60 ? `${Math.round(s)} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}
async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

// ---- the fleet table --------------------------------------------------------------------------------------
function renderRow(sensor) {
  const body = document.querySelector("#fleet tbody");
  let row = body.querySelector(`tr[data-sensor="${CSS.escape(sensor.id)}"]`);
  if (!row) {
    row = el("tr", { "data-sensor": sensor.id });
    row.addEventListener("click", () => select(sensor.id));
    const ids = [...state.sensors.keys()].sort();
    const next = ids[ids.indexOf(sensor.id) + 1];
    body.insertBefore(row, next ? body.querySelector(`tr[data-sensor="${CSS.escape(next)}"]`) : null);
  }
  row.dataset.status = sensor.status;
  row.dataset.label = sensor.label ?? "";
  row.replaceChildren();
  row.append(el("td", {}, sensor.name || sensor.id));
  const status = el("td");
  status.append(el("span", { class: `dot ${sensor.status}` }), document.createTextNode(sensor.status));
  row.append(status);
  const heard = sensor.scene_time !== null && sensor.scene_time !== undefined;  // it has made a decision
  const chip = el("span", { class: "chip" }, heard ? sceneName(sensor.label) : "–");
  chip.style.background = colour(sensor.label);
  const scene = el("td");
  scene.append(chip);
  row.append(scene);
  row.append(el("td", {}, sensor.confidence == null ? "–" : `${Math.round(sensor.confidence * 100)} %`));
  row.append(el("td", {}, sensor.level == null ? "–" : `${sensor.level.toFixed(1)} ${unit(sensor.level_reference)}`));
  row.append(el("td", { class: "seen", "data-time": sensor.last_seen ?? "" }, ago(sensor.last_seen)));
  row.append(el("td", {}, String(sensor.lost ?? 0)));
}

// ---- the plan ---------------------------------------------------------------------------------------------
function niceMetres(target) {
  const p = Math.pow(10, Math.floor(Math.log10(target)));
  for (const m of [1, 2, 5, 10]) if (m * p >= target) return m * p;
  return 10 * p;
}

function planLayout(sensors) {
  // positions in a 800 x 500 drawing: site plan pixels, or an equirectangular lat/lon projection
  const placed = [], unplaced = [];
  for (const s of sensors) {
    const loc = s.location || {};
    if (state.sitePlan && loc.x != null && loc.y != null) placed.push([s, loc.x, loc.y]);
    else if (!state.sitePlan && loc.latitude != null && loc.longitude != null) placed.push([s, loc.longitude, loc.latitude]);
    else unplaced.push(s);
  }
  return { placed, unplaced };
}

function renderPlan() {
  const box = document.getElementById("plan");
  const sensors = [...state.sensors.values()];
  const { placed, unplaced } = planLayout(sensors);
  const svg = state.sitePlan ? sitePlanSvg(placed) : gridSvg(placed);
  box.replaceChildren(svg);
  if (unplaced.length) {
    box.append(el("div", { class: "unplaced" },
      `without a location: ${unplaced.map((s) => s.id).join(", ")} (PUT /v1/sensors/{id} sets one)`));
  }
  const legend = el("div", { class: "legend" });
  for (const label of state.classes) {
    const item = el("span", {}, sceneName(label));
    item.style.setProperty("--swatch", colour(label));
    legend.append(item);
  }
  const off = el("span", {}, "offline");
  off.style.setProperty("--swatch", "var(--offline)");
  legend.append(off);
  box.append(legend);
}

function sitePlanSvg(placed) {
  const img = state.planImage;
  const w = img ? img.naturalWidth || 800 : 800, h = img ? img.naturalHeight || 500 : 500;
  const svg = el("svg:svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "site plan" });
  svg.append(el("svg:image", { href: "/site-plan", x: 0, y: 0, width: w, height: h }));
  for (const [s, x, y] of placed) svg.append(marker(s, x, y, Math.max(w, h) / 80));
  return svg;
}

function gridSvg(placed) {
  const W = 800, H = 500, pad = 40;
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "sensors by latitude and longitude" });
  if (!placed.length) {
    svg.append(el("svg:text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis-label" },
      "no sensor has a location yet"));
    return svg;
  }
  const lons = placed.map((p) => p[1]), lats = placed.map((p) => p[2]);
  const midLat = (Math.min(...lats) + Math.max(...lats)) / 2;
  const k = Math.cos(midLat * Math.PI / 180);
  let spanX = (Math.max(...lons) - Math.min(...lons)) * k, spanY = Math.max(...lats) - Math.min(...lats);
  const span = Math.max(spanX, spanY * (W - 2 * pad) / (H - 2 * pad), 0.0005) * 1.25;
  const cx = (Math.min(...lons) + Math.max(...lons)) / 2, cy = midLat;
  const scale = (W - 2 * pad) / span; // px per degree of latitude
  const px = (lon) => W / 2 + (lon - cx) * k * scale, py = (lat) => H / 2 - (lat - cy) * scale;
  // grid lines every nice step of degrees
  const step = niceMetres(span / 6 * 111320) / 111320;
  for (let lat = Math.floor((cy - H / scale) / step) * step; lat <= cy + H / scale; lat += step) {
    const y = py(lat);
    if (y < 0 || y > H) continue;
    svg.append(el("svg:line", { x1: 0, x2: W, y1: y, y2: y, class: "grid-line" }));
    svg.append(el("svg:text", { x: 4, y: y - 3, class: "grid-label" }, `${lat.toFixed(4)}°`));
  }
  for (let lon = Math.floor((cx - W / scale / k) / (step / k)) * (step / k); lon <= cx + W / scale / k; lon += step / k) {
    const x = px(lon);
    if (x < 0 || x > W) continue;
    svg.append(el("svg:line", { x1: x, x2: x, y1: 0, y2: H, class: "grid-line" }));
    svg.append(el("svg:text", { x: x + 3, y: H - 4, class: "grid-label" }, `${lon.toFixed(4)}°`));
  }
  // scale bar: a round number of metres about a fifth of the width
  const metresPerPx = 111320 / scale, metres = niceMetres(metresPerPx * W / 5), len = metres / metresPerPx;
  svg.append(el("svg:line", { x1: W - pad - len, x2: W - pad, y1: pad / 2, y2: pad / 2, class: "scale-bar" }));
  svg.append(el("svg:text", { x: W - pad - len / 2, y: pad / 2 - 6, "text-anchor": "middle", class: "scale-label" },
    metres >= 1000 ? `${metres / 1000} km` : `${metres} m`));
  for (const [s, lon, lat] of placed) svg.append(marker(s, px(lon), py(lat), 9));
  return svg;
}

function marker(sensor, x, y, r) {
  const g = el("svg:g", { class: "marker", "data-sensor": sensor.id, "data-status": sensor.status,
                          "data-label": sensor.label ?? "", transform: `translate(${x},${y})` });
  if (state.selected === sensor.id) g.classList.add("selected");
  g.append(el("svg:circle", { r, fill: sensor.status === "offline" ? "#b8bec6" : colour(sensor.label) }));
  g.append(el("svg:text", { x: r + 4, y: 4 }, sensor.name || sensor.id));
  g.append(el("svg:title", {}, `${sensor.id}: ${sceneName(sensor.label)} (${sensor.status})`));
  g.addEventListener("click", () => select(sensor.id));
  return g;
}

// ---- one sensor: its day and its week ---------------------------------------------------------------------
async function select(id) {
  state.selected = id;
  document.getElementById("detail-panel").hidden = false;
  document.getElementById("detail-title").textContent = `${id}: the last 24 hours and the last 7 days`;
  renderPlan();
  await renderDetail();
}

async function renderDetail() {
  const id = state.selected;
  if (!id) return;
  const now = Date.now() / 1000;
  const q = (from) => `from=${(now - from).toFixed(0)}&to=${now.toFixed(0)}`;
  const [day, week] = await Promise.all([
    getJSON(`/v1/sensors/${encodeURIComponent(id)}/timeline?${q(86400)}`),
    getJSON(`/v1/summary?sensor=${encodeURIComponent(id)}&bucket=day&${q(7 * 86400)}`)]);
  if (id !== state.selected) return;
  document.getElementById("day-timeline").replaceChildren(dayTimeline(day, now - 86400, now));
  document.getElementById("heatmap").replaceChildren(heatMap(week));
}

function dayTimeline(data, from, to) {
  const W = 1000, H = 180, left = 50, right = 25, band = 40, top = 10;
  const x = (t) => left + (t - from) / (to - from) * (W - left - right);
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "scene timeline" });
  const lane = { top: top + band + 6, height: 40 };  // confidence 0..1
  svg.append(el("svg:rect", { x: left, y: lane.top, width: W - left - right, height: lane.height, fill: "#f3f5f7" }));
  svg.append(el("svg:text", { x: left - 4, y: lane.top + 8, "text-anchor": "end", class: "axis-label" }, "1"));
  svg.append(el("svg:text", { x: left - 4, y: lane.top + lane.height, "text-anchor": "end", class: "axis-label" }, "0"));
  for (const seg of data.segments) {
    const a = x(Date.parse(seg.start) / 1000), b = x(Date.parse(seg.end) / 1000);
    const rect = el("svg:rect", { x: a, y: top, width: Math.max(b - a, 1), height: band, fill: colour(seg.label),
                                  class: "band", "data-label": seg.label ?? "" });
    rect.append(el("svg:title", {}, `${sceneName(seg.label)} ${seg.start} – ${seg.end}`));
    svg.append(rect);
    if (seg.confidence != null) {  // confidence as the band's upper part
      const y = lane.top + lane.height - seg.confidence * lane.height;
      svg.append(el("svg:line", { x1: a, x2: Math.max(b, a + 1), y1: y, y2: y, stroke: "#1d2430", "stroke-width": 1.5 }));
    }
  }
  svg.append(el("svg:text", { x: 2, y: top + 25, class: "axis-label" }, "scene"));
  svg.append(el("svg:text", { x: 2, y: lane.top + 24, class: "axis-label" }, "conf."));
  const points = data.level.points;
  if (points.length) {
    const values = points.map((p) => p.mean), lo = Math.min(...values) - 3, hi = Math.max(...values) + 3;
    const y = (v) => H - 20 - (v - lo) / (hi - lo) * 45;
    const d = points.map((p, i) => `${i ? "L" : "M"}${x(Date.parse(p.t) / 1000).toFixed(1)},${y(p.mean).toFixed(1)}`);
    svg.append(el("svg:path", { d: d.join(""), fill: "none", stroke: "#c44e52", "stroke-width": 1.5, class: "level" }));
    svg.append(el("svg:text", { x: 2, y: H - 60, class: "axis-label" }, `${hi.toFixed(0)} ${unit(data.level.reference)}`));
    svg.append(el("svg:text", { x: 2, y: H - 20, class: "axis-label" }, `${lo.toFixed(0)} ${unit(data.level.reference)}`));
  }
  for (let h = 0; h <= 24; h += 3) {
    const t = from + h * 3600;
    svg.append(el("svg:text", { x: x(t), y: H - 4, "text-anchor": "middle", class: "axis-label" },
      new Date(t * 1000).toISOString().slice(11, 16)));
  }
  return svg;
}

function heatMap(summary) {
  const labels = [...new Set(summary.hour_of_day.flatMap((h) => Object.keys(h.share)))].sort();
  const W = 1000, cell = (W - 130) / 24, H = 24 + labels.length * 22;
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${Math.max(H, 40)}`, role: "img", "aria-label": "hour of day by scene" });
  if (!labels.length) {
    svg.append(el("svg:text", { x: 10, y: 25, class: "axis-label" }, "nothing stored in the last 7 days"));
    return svg;
  }
  labels.forEach((label, row) => {
    svg.append(el("svg:text", { x: 120, y: 16 + row * 22, "text-anchor": "end", class: "axis-label" }, sceneName(label === "silence" ? null : label)));
    for (const h of summary.hour_of_day) {
      const share = h.share[label] || 0;
      const rect = el("svg:rect", { x: 130 + h.hour * cell, y: 2 + row * 22, width: cell - 1, height: 20,
        fill: label === "silence" ? SILENCE : colour(label), "fill-opacity": (0.08 + 0.92 * share).toFixed(3),
        class: "cell" });
      rect.append(el("svg:title", {}, `${sceneName(label)}, ${h.hour}:00 UTC: ${Math.round(share * 100)} %`));
      svg.append(rect);
    }
  });
  for (let h = 0; h < 24; h += 3) {
    svg.append(el("svg:text", { x: 130 + (h + 0.5) * cell, y: H - 2, "text-anchor": "middle", class: "axis-label" }, `${h}h`));
  }
  return svg;
}

// ---- alerts -------------------------------------------------------------------------------------------------
function renderAlert(alert, prepend = false) {
  const list = document.getElementById("alerts");
  list.querySelector("li.none")?.remove();
  let item = list.querySelector(`li[data-id="${alert.id}"]`);
  if (!item) {
    item = el("li", { "data-id": alert.id });
    if (prepend) list.prepend(item); else list.append(item);
  }
  item.classList.toggle("ongoing", !alert.ended);
  item.textContent = `${alert.rule} on ${alert.sensor_id}: ${alert.started}` +
    (alert.ended ? ` – ${alert.ended}` : " (ongoing)");
}

// ---- live ---------------------------------------------------------------------------------------------------
let planPending = false;
function schedulePlan() {
  if (planPending) return;
  planPending = true;
  requestAnimationFrame(() => { planPending = false; renderPlan(); });
}

// a level is dB(A) SPL only when the sensor is calibrated; otherwise it is relative to full scale, and says so
function unit(reference) {
  return reference === "dB SPL" ? "dB(A)" : "dBFS";
}

function onDecision(event) {
  const s = state.sensors.get(event.sensor_id);
  if (!s) { refreshFleet(); return; }
  if (event.current) Object.assign(s, { label: event.label, confidence: event.confidence, level: event.level,
                                         level_reference: event.level_reference,
                                         last_seen: event.t, scene_time: event.t, status: "online" });
  renderRow(s);
  schedulePlan();
}

function onStatus(event) {
  const s = state.sensors.get(event.sensor_id);
  if (!s) { refreshFleet(); return; }
  s.status = event.status;
  renderRow(s);
  schedulePlan();
}

function connect() {
  const live = document.getElementById("live-state");
  const source = new EventSource("/v1/live");
  source.onopen = () => { live.dataset.state = "live"; live.textContent = "live"; refreshFleet(); };
  source.onerror = () => { live.dataset.state = "down"; live.textContent = "reconnecting…"; };
  source.addEventListener("decision", (e) => onDecision(JSON.parse(e.data)));
  source.addEventListener("status", (e) => onStatus(JSON.parse(e.data)));
  source.addEventListener("alert", (e) => renderAlert(JSON.parse(e.data), true));
}

async function refreshFleet() {
  const fleet = await getJSON("/v1/sensors");
  for (const s of fleet) {
    for (const c of s.model.classes || []) colour(c);
    state.sensors.set(s.id, s);
  }
  for (const s of fleet) renderRow(s);
  renderPlan();
}

async function start() {
  const config = await getJSON("/v1/config");
  state.sitePlan = config.site_plan;
  if (state.sitePlan) {
    state.planImage = new Image();
    state.planImage.src = "/site-plan";
    await state.planImage.decode().catch(() => null);
  }
  await refreshFleet();
  for (const a of await getJSON("/v1/alerts")) renderAlert(a);
  connect();
  setInterval(() => {
    for (const cell of document.querySelectorAll("td.seen")) cell.textContent = ago(cell.dataset.time);
  }, 5000);
  setInterval(() => { if (state.selected) renderDetail(); }, 10000);
  setInterval(refreshFleet, 30000); // a safety net; the live feed does the work
}

document.addEventListener("DOMContentLoaded", () => { start().catch((e) => console.error(e)); });
