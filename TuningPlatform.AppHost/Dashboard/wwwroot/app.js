"use strict";
// The TuningPlatform dashboard: one page, routed by the URL's hash, talking to the AppHost's JSON API
// (/api/resources, /api/call/{service}/{method}, /api/telemetry/*). No external library: charts are SVG drawn here.

// ---------------------------------------------------------------------------------------------- helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const num = v => v == null || v === "" ? 0 : Number(v);
const fmt = (v, digits = 3) => {
  if (v == null || v === "") return "";
  const n = Number(v);
  if (!Number.isFinite(n)) return String(v);
  if (Number.isInteger(n) && Math.abs(n) < 1e15) return n.toLocaleString("en-US");
  return Math.abs(n) >= 1000 ? n.toFixed(0) : Math.abs(n) < 0.001 && n !== 0 ? n.toExponential(2) : n.toPrecision(digits);
};
/** Short axis labels: 1.2k, 35M, 4.1G. */
const compact = v => {
  const a = Math.abs(v);
  for (const [d, s] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) if (a >= d) return String(Number((v / d).toPrecision(3))) + s;
  return fmt(v);
};
const ms = v => v == null ? "" : `${fmt(v)} ms`;
const time = ts => ts ? new Date(ts).toLocaleString() : "";
const short = (s, n = 160) => s && s.length > n ? s.slice(0, n) + "…" : (s || "");
const enumName = (v, prefix) => String(v || "").replace(prefix, "").toLowerCase().replace(/_/g, " ");

/** An error of the RPC proxy: {status, code, message, param} and the HTTP status. */
class RpcError extends Error {
  constructor(http, body) {
    super(body.message || `HTTP ${http}`);
    this.http = http; this.status = body.status || ""; this.code = body.code || ""; this.param = body.param || "";
  }
}

/** One unary or client-streaming RPC through the AppHost's proxy. */
async function rpc(service, method, request, options = {}) {
  const response = await fetch(`/api/call/${service}/${method}`, {
    method: "POST", headers: { "X-Requested-With": "dashboard", "Content-Type": "application/json" },
    body: JSON.stringify(request ?? {}), signal: options.signal,
  });
  const text = await response.text();
  let body;
  try { body = text ? JSON.parse(text) : {}; } catch { body = { message: text }; }
  if (!response.ok) throw new RpcError(response.status, body);
  return body;
}

/** A server-streaming RPC: calls onMessage for each NDJSON line as it arrives. */
async function stream(service, method, request, onMessage, signal) {
  const response = await fetch(`/api/call/${service}/${method}`, {
    method: "POST", headers: { "X-Requested-With": "dashboard", "Content-Type": "application/json" },
    body: JSON.stringify(request ?? {}), signal,
  });
  if (!response.ok) {
    let body; const text = await response.text();
    try { body = JSON.parse(text); } catch { body = { message: text }; }
    throw new RpcError(response.status, body);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (!line) continue;
      const message = JSON.parse(line);
      if (message.error) throw new RpcError(200, message.error);
      onMessage(message);
    }
  }
}

/** A clear box for an RPC's failure; UNIMPLEMENTED says the service does not do it yet. */
function errorBox(error, what) {
  if (error.name === "AbortError") return el("div", { class: "note" }, "Stopped.");
  const status = error.status ? `${error.status} (HTTP ${error.http})` : "Error";
  const hint = error.status === "UNIMPLEMENTED" ? " — this service does not implement it yet."
    : error.status === "UNAVAILABLE" ? " — the service is not reachable; see Resources." : "";
  return el("div", { class: "error", role: "alert", dataset: { status: error.status || "" } },
    el("b", {}, status), what ? ` ${what}: ` : ": ", error.message, hint,
    error.param ? el("div", { class: "note" }, `field: ${error.param}`) : null);
}

/** Runs an async loader into a container, showing its error instead of breaking the page. */
async function load(container, what, fn) {
  try {
    const content = await fn();
    if (content !== undefined) container.replaceChildren(...[content].flat());
  } catch (error) {
    container.replaceChildren(errorBox(error, what));
  }
}

function table(headers, rows, onClick) {
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map(h => el("th", { class: h.endsWith("#") ? "num" : "" }, h.replace(/#$/, ""))))),
    el("tbody", {}, rows.map(r => {
      const tr = el("tr", { class: onClick ? "link" : "", onclick: onClick ? () => onClick(r.key) : null, dataset: r.key ? { key: r.key } : null },
        r.cells.map((c, i) => el("td", { class: headers[i].endsWith("#") ? "num" : "" }, c)));
      return tr;
    })));
}

function kv(pairs) {
  return table(["field", "value"], pairs.filter(p => p[1] !== undefined && p[1] !== "").map(([k, v]) => ({ cells: [k, v] })));
}

// ---------------------------------------------------------------------------------------------- charts

const PALETTE = ["#58a6ff", "#f0883e", "#3fb950", "#bc8cff", "#f85149", "#d29922"];

/** A line chart: series = [{name, points: [[x, y]...]}]; SVG with axes, ticks and a legend. */
function lineChart(series, { width = 520, height = 220, xLabel = "", yLabel = "", id } = {}) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const make = (tag, attrs, text) => { const n = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); if (text != null) n.textContent = text; return n; };
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`); svg.setAttribute("class", "chart"); svg.setAttribute("width", "100%");
  if (id) svg.id = id;
  const pad = { l: 52, r: 10, t: 18, b: 28 };
  const all = series.flatMap(s => s.points).filter(p => Number.isFinite(p[0]) && Number.isFinite(p[1]));
  svg.dataset.points = String(all.length);
  if (!all.length) { svg.append(make("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "no data yet")); return svg; }
  let [x0, x1] = [Math.min(...all.map(p => p[0])), Math.max(...all.map(p => p[0]))];
  let [y0, y1] = [Math.min(...all.map(p => p[1])), Math.max(...all.map(p => p[1]))];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
  const X = x => pad.l + (x - x0) / (x1 - x0) * (width - pad.l - pad.r);
  const Y = y => height - pad.b - (y - y0) / (y1 - y0) * (height - pad.t - pad.b);
  svg.append(make("line", { class: "axis", x1: pad.l, y1: height - pad.b, x2: width - pad.r, y2: height - pad.b }));
  svg.append(make("line", { class: "axis", x1: pad.l, y1: pad.t, x2: pad.l, y2: height - pad.b }));
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4, x = x0 + (x1 - x0) * i / 4;
    svg.append(make("text", { x: pad.l - 4, y: Y(y) + 3, "text-anchor": "end" }, compact(y)));
    svg.append(make("text", { x: X(x), y: height - pad.b + 12, "text-anchor": "middle" }, compact(x)));
  }
  if (xLabel) svg.append(make("text", { x: width - pad.r, y: height - 2, "text-anchor": "end" }, xLabel));
  if (yLabel) svg.append(make("text", { x: pad.l, y: 10 }, yLabel));
  series.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    const pts = s.points.filter(p => Number.isFinite(p[0]) && Number.isFinite(p[1]));
    if (!pts.length) return;
    svg.append(make("polyline", { fill: "none", stroke: color, "stroke-width": 1.5, points: pts.map(p => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" "), "data-series": s.name }));
    if (pts.length < 40) pts.forEach(p => svg.append(make("circle", { cx: X(p[0]), cy: Y(p[1]), r: 2.5, fill: color })));
    svg.append(make("text", { x: width - pad.r - 4, y: pad.t + 12 * i, "text-anchor": "end", fill: color, style: `fill:${color}` }, s.name));
  });
  return svg;
}

/** Horizontal bars: items = [{label, value}]. */
function barChart(items, { width = 520, format = fmt } = {}) {
  const ns = "http://www.w3.org/2000/svg";
  const rowH = 20, labelW = 160, height = items.length * rowH + 8;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`); svg.setAttribute("class", "chart"); svg.setAttribute("width", "100%");
  const max = Math.max(...items.map(i => Math.abs(i.value)), 1e-12);
  items.forEach((item, i) => {
    const w = Math.max(1, Math.abs(item.value) / max * (width - labelW - 70));
    const y = 4 + i * rowH;
    const t = document.createElementNS(ns, "text"); t.setAttribute("x", labelW - 6); t.setAttribute("y", y + 13); t.setAttribute("text-anchor", "end"); t.textContent = short(item.label, 28);
    const r = document.createElementNS(ns, "rect"); r.setAttribute("x", labelW); r.setAttribute("y", y + 3); r.setAttribute("width", w); r.setAttribute("height", rowH - 6); r.setAttribute("class", "bar-fill");
    if (item.color) r.setAttribute("style", `fill:${item.color}`);
    const v = document.createElementNS(ns, "text"); v.setAttribute("x", labelW + w + 4); v.setAttribute("y", y + 13); v.textContent = format(item.value);
    svg.append(t, r, v);
  });
  return svg;
}

// ---------------------------------------------------------------------------------------------- router

const view = document.getElementById("view");
let pageTimers = [];
let pageAbort = new AbortController();

function every(fn, interval) { fn(); pageTimers.push(setInterval(fn, interval)); }

function route() {
  pageTimers.forEach(clearInterval); pageTimers = [];
  pageAbort.abort(); pageAbort = new AbortController();
  const hash = location.hash.replace(/^#/, "");
  const [page, ...rest] = hash.startsWith("/") ? hash.slice(1).split("/") : ["resources"];
  const arg = rest.map(decodeURIComponent).join("/");
  document.querySelectorAll("#nav a").forEach(a => a.classList.toggle("active", a.dataset.page === (page || "resources")));
  view.replaceChildren();
  view.dataset.page = page || "resources";
  const pages = { resources: resourcesPage, playground: playgroundPage, datasets: datasetsPage, training: trainingPage,
    evaluation: evaluationPage, compare: comparePage, traces: tracesPage, metrics: metricsPage, api: apiPage };
  (pages[page] || resourcesPage)(arg);
}

window.addEventListener("hashchange", route);

// The header's summary is kept on every page.
async function refreshSummary() {
  try {
    const resources = await (await fetch("/api/resources")).json();
    const healthy = resources.filter(r => r.state === "Healthy").length;
    document.getElementById("summary").textContent = `${healthy} of ${resources.length} resources healthy`;
    return resources;
  } catch { return []; }
}
setInterval(refreshSummary, 3000);

// ---------------------------------------------------------------------------------------------- resources

function resourcesPage() {
  let selected = null, lines = [], last = 0;
  const body = el("tbody");
  const title = el("strong", { id: "log-title" }, "Console logs");
  const search = el("input", { id: "search", placeholder: "Filter lines…", autocomplete: "off" });
  const pre = el("pre", { id: "log-lines" });
  const notice = el("div", { id: "resource-notice" });
  view.append(notice,
    el("table", { id: "resources" },
      el("thead", {}, el("tr", {}, ["Resource", "Type", "State", "Endpoint", "Restarts", "PID", "Waits for", "Actions"].map(h => el("th", {}, h)))),
      body),
    el("section", { id: "logs" }, el("div", { class: "bar" }, title, search), pre));

  function cell(row, text, cls) { const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td; }

  async function refresh() {
    const resources = await refreshSummary();
    body.replaceChildren();
    for (const r of resources) {
      const row = body.insertRow();
      row.dataset.resource = r.name;
      cell(row, r.name); cell(row, r.kind); cell(row, r.state, "state " + r.state); cell(row, r.endpoint);
      cell(row, String(r.restarts)); cell(row, r.pid == null ? "" : String(r.pid)); cell(row, r.waitsFor.join(", "));
      const actions = row.insertCell();
      actions.append(el("button", { onclick: () => select(r.name) }, "Logs"));
      // Only the actions the resource's state allows (the AppHost lists them): start when stopped, stop and restart when running.
      for (const action of r.actions || []) {
        actions.append(" ", el("button", { class: "action", dataset: { action }, onclick: () => command(r.name, action) }, action[0].toUpperCase() + action.slice(1)));
      }
    }
    if (!selected && resources.length) {
      const fromHash = decodeURIComponent(location.hash.replace(/^#logs=/, ""));
      select(fromHash && !fromHash.startsWith("#") && !fromHash.startsWith("/") ? fromHash : resources[0].name);
    }
  }

  async function command(name, action) {
    const response = await fetch(`/api/resources/${encodeURIComponent(name)}/${action}`, { method: "POST", headers: { "X-Requested-With": "dashboard" } });
    if (response.ok) notice.replaceChildren();
    else {
      let message = `HTTP ${response.status}`;
      try { message = (await response.json()).error || message; } catch { /* not JSON */ }
      notice.replaceChildren(el("div", { class: "error", role: "alert", dataset: { status: String(response.status) } }, el("b", {}, `${action} ${name}: `), message));
    }
    refresh();
  }

  function select(name) {
    selected = name; lines = []; last = 0;
    title.textContent = `Console logs: ${name}`;
    history.replaceState(null, "", "#logs=" + encodeURIComponent(name));
    poll();
  }

  async function poll() {
    if (!selected) return;
    const name = selected;
    const response = await fetch(`/api/resources/${encodeURIComponent(name)}/logs?after=${last}`);
    if (!response.ok || name !== selected) return;
    const page = await response.json();
    last = page.last;
    lines.push(...page.lines);
    if (lines.length > 5000) lines = lines.slice(-5000);
    render();
  }

  function render() {
    const filter = search.value.toLowerCase();
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = lines.filter(l => !filter || l.toLowerCase().includes(filter)).join("\n");
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  search.addEventListener("input", render);
  every(refresh, 2000);
  pageTimers.push(setInterval(poll, 1000));
}

// ---------------------------------------------------------------------------------------------- playground

/** Options for a model picker: base models, inference adapters and fine-tuned models; each value is a ModelRef as JSON. */
async function modelOptions(status) {
  const options = [];
  const models = await rpc("inference", "ListModels", {});
  for (const m of models.models || []) options.push(el("option", { value: JSON.stringify({ baseModelId: m.id }) }, `${m.id} (base)`));
  try {
    const adapters = await rpc("inference", "ListAdapters", {});
    for (const a of adapters.adapters || []) options.push(el("option", { value: JSON.stringify({ baseModelId: a.baseModelId, adapterId: a.id }) }, `${a.id} (adapter on ${a.baseModelId})`));
  } catch (error) { status?.append(errorBox(error, "adapters")); }
  try {
    const tuned = await rpc("training", "ListFineTunedModels", {});
    for (const f of tuned.models || tuned.fineTunedModels || []) options.push(el("option", { value: JSON.stringify({ fineTunedModelId: f.id }) }, `${f.id} (fine-tuned)`));
  } catch { /* the training service may not list fine-tuned models yet; adapters above cover them */ }
  if (!options.length) options.push(el("option", { value: "" }, "no model: put a Hugging Face model directory in <data dir>/models"));
  return options;
}

/** Options for a dataset-version picker (each dataset's latest version), after an empty "choose" option. */
async function datasetOptions() {
  const datasets = (await rpc("curation", "ListDatasets", { page: { pageSize: 200 } })).datasets || [];
  return [el("option", { value: "" }, "— choose a dataset —"), ...datasets.map(d => el("option", { value: d.latestVersionId }, `${d.name} (${d.latestVersionId})`))];
}

/** The metrics a form offers, as MetricKind names; the first two are checked by default. */
const FORM_METRICS = ["EXACT_MATCH", "TOKEN_F1", "LOSS", "ROUGE", "BLEU", "CHRF", "MEAN_TOKEN_ACCURACY"];

function metricBoxes(prefix) {
  return el("div", { class: "row checks", id: `${prefix}-metrics`, dataset: { field: "metrics" } },
    FORM_METRICS.map((m, i) => el("label", { class: "check" }, el("input", { type: "checkbox", value: `METRIC_KIND_${m}`, checked: i < 2 }), enumName(m, ""))));
}

const checkedMetrics = box => [...box.querySelectorAll("input:checked")].map(c => ({ kind: c.value }));

/**
 * Runs a form's request: on a service error, shows it (status, message, field) and marks the inputs whose
 * data-field the error's field starts with, so the person sees which one to fix.
 */
async function submitForm(form, result, what, fn) {
  form.querySelectorAll(".invalid").forEach(n => n.classList.remove("invalid"));
  try {
    const content = await fn();
    result.replaceChildren(...[content].flat().filter(Boolean));
  } catch (error) {
    result.replaceChildren(errorBox(error, what));
    if (error.param) {
      form.querySelectorAll("[data-field]").forEach(n => { if (error.param === n.dataset.field || error.param.startsWith(n.dataset.field + ".") || error.param.startsWith(n.dataset.field + "[")) n.classList.add("invalid"); });
    }
  }
}

function playgroundPage() {
  const modelSelect = el("select", { id: "pg-model" });
  const mode = el("select", { id: "pg-mode" }, el("option", { value: "completion" }, "completion"), el("option", { value: "chat" }, "chat"));
  const temperature = el("input", { id: "pg-temperature", type: "number", step: "0.1", min: "0", max: "2", value: "0.8" });
  const maxTokens = el("input", { id: "pg-max", type: "number", min: "1", value: "128" });
  const system = el("input", { id: "pg-system", placeholder: "system prompt (chat)", size: "40" });
  const transcript = el("div", { class: "chat", id: "pg-transcript" });
  const input = el("textarea", { id: "pg-input", rows: "3", placeholder: "Once upon a time" });
  const send = el("button", { class: "primary", id: "pg-send" }, "Send");
  const stop = el("button", { id: "pg-stop", disabled: true }, "Stop");
  const clear = el("button", { onclick: () => { history.length = 0; transcript.replaceChildren(); } }, "Clear");
  const status = el("div", { id: "pg-status", class: "note" });
  const history = [];
  let abort = null;

  view.append(el("div", { class: "panel" },
    el("h2", {}, "Playground"),
    el("div", { class: "row" },
      el("label", {}, "model or adapter", modelSelect), el("label", {}, "form", mode),
      el("label", {}, "temperature", temperature), el("label", {}, "max new tokens", maxTokens), el("label", {}, "system", system)),
    el("p", { class: "note" }, "Completion form continues the text; chat form uses the model's chat template (a model without one answers FAILED_PRECONDITION)."),
    transcript, input, el("div", { class: "row" }, send, stop, clear), status));

  load(modelSelect, "models", () => modelOptions(status));

  send.addEventListener("click", async () => {
    const text = input.value || input.placeholder;
    const model = modelSelect.value ? JSON.parse(modelSelect.value) : {};
    const sampling = { temperature: Number(temperature.value), maxNewTokens: Number(maxTokens.value) };
    let request;
    if (mode.value === "chat") {
      history.push({ role: "CHAT_ROLE_USER", content: text });
      const messages = (system.value ? [{ role: "CHAT_ROLE_SYSTEM", content: system.value }] : []).concat(history);
      request = { model, input: { chat: { messages } }, sampling };
    } else {
      request = { model, input: { completion: { prompt: text } }, sampling };
    }
    transcript.append(el("div", { class: "msg user" }, text));
    const out = el("span", { class: "pg-output" }, mode.value === "completion" ? "" : "");
    const meta = el("span", { class: "meta" });
    const bubble = el("div", { class: "msg assistant" }, mode.value === "completion" ? el("span", { class: "note" }, text) : null, out, meta);
    transcript.append(bubble);
    input.value = "";
    send.disabled = true; stop.disabled = false; status.replaceChildren("generating…");
    abort = new AbortController();
    let reply = "", deltas = 0;
    try {
      await stream("inference", "GenerateStream", request, message => {
        if (message.delta) { reply += message.delta.text; out.textContent = reply; bubble.dataset.deltas = String(++deltas); transcript.scrollTop = transcript.scrollHeight; }
        if (message.final) {
          const u = message.final.usage || {};
          meta.textContent = `${enumName(message.final.finishReason, "FINISH_REASON_")} · ${u.completionTokens} tokens · ${fmt(u.tokensPerSecond)} tokens/s · first token ${ms(u.timeToFirstTokenMs)}`;
          bubble.dataset.done = "true";
        }
      }, abort.signal);
      if (mode.value === "chat") history.push({ role: "CHAT_ROLE_ASSISTANT", content: reply });
      status.replaceChildren();
    } catch (error) {
      if (mode.value === "chat") history.pop();
      bubble.dataset.done = "error";
      status.replaceChildren(errorBox(error, "GenerateStream"));
    } finally {
      send.disabled = false; stop.disabled = true; abort = null;
    }
  });
  stop.addEventListener("click", () => abort?.abort());
}

// ---------------------------------------------------------------------------------------------- datasets

function datasetsPage(arg) {
  if (arg) return datasetPage(arg);
  const list = el("div", { id: "ds-list" }, "loading…");
  const file = el("input", { type: "file", id: "ds-file", accept: ".jsonl,.json,.csv,.gz,.txt" });
  const name = el("input", { id: "ds-name", placeholder: "new dataset name" });
  const validateOnly = el("input", { type: "checkbox", id: "ds-validate-only" });
  const upload = el("button", { class: "primary", id: "ds-upload" }, "Upload");
  const result = el("div", { id: "ds-upload-result" });
  view.append(
    el("div", { class: "panel" }, el("h2", {}, "Upload a dataset"),
      el("div", { class: "row" }, el("label", {}, "file (JSONL, JSON, CSV; Alpaca, ShareGPT, OpenAI chat…)", file), el("label", {}, "dataset name", name),
        el("label", {}, "validate only", validateOnly), upload), result),
    el("div", { class: "panel" }, el("h2", {}, "Datasets"), list));

  const refresh = () => load(list, "ListDatasets", async () => {
    const response = await rpc("curation", "ListDatasets", { page: { pageSize: 200 } });
    const datasets = response.datasets || [];
    if (!datasets.length) return el("p", { class: "note" }, "No dataset yet: upload one above.");
    return table(["name", "id", "versions#", "latest version", "updated"],
      datasets.map(d => ({ key: d.id, cells: [d.name, d.id, d.versionCount, d.latestVersionId, time(d.updatedAt)] })),
      id => location.hash = `#/datasets/${encodeURIComponent(id)}`);
  });
  refresh();

  upload.addEventListener("click", async () => {
    const f = file.files[0];
    if (!f) { result.replaceChildren(el("div", { class: "error" }, "Choose a file first.")); return; }
    upload.disabled = true; result.replaceChildren(`uploading ${f.name} (${fmt(f.size)} bytes)…`);
    try {
      const bytes = new Uint8Array(await f.arrayBuffer());
      const messages = [{ metadata: { target: { newDatasetName: name.value || f.name.replace(/\.[^.]+$/, "") }, fileName: f.name, options: { validateOnly: validateOnly.checked } } }];
      for (let i = 0; i < bytes.length; i += 512 * 1024) messages.push({ chunk: base64(bytes.subarray(i, i + 512 * 1024)) });
      const response = await rpc("curation", "UploadDataset", messages);
      result.replaceChildren(uploadResult(response));
      refresh();
    } catch (error) {
      result.replaceChildren(errorBox(error, "UploadDataset"));
    } finally { upload.disabled = false; }
  });
}

function base64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function uploadResult(r) {
  const v = r.version || {};
  return el("div", { id: "ds-outcome", dataset: { outcome: r.outcome } },
    el("p", {}, el("b", {}, enumName(r.outcome, "UPLOAD_OUTCOME_")), v.id ? ` — version ${v.id} of ${v.datasetId}, ${v.exampleCount} examples` : "",
      r.deduplicated ? " (same content as an existing version)" : ""),
    r.detection ? el("p", { class: "note" }, `detected: ${enumName(r.detection.fileFormat, "FILE_FORMAT_")}, ${enumName(r.detection.recordFormat, "RECORD_FORMAT_")}`) : null,
    r.validation ? validationReport(r.validation) : null);
}

function validationReport(report) {
  const issues = report.issues || [];
  return el("div", { class: "validation" },
    el("h3", {}, "Validation"),
    el("p", {}, `${report.recordsValid} of ${report.recordsTotal} records valid; ${report.errorCount} errors, ${report.warningCount} warnings${report.truncated ? " (issues truncated)" : ""}`),
    issues.length ? table(["severity", "code", "file", "line#", "field", "message"],
      issues.map(i => ({ cells: [enumName(i.severity, "VALIDATION_SEVERITY_"), enumName(i.code, "VALIDATION_ISSUE_CODE_"), i.file, i.line, i.field, i.message] }))) : null);
}

function datasetPage(datasetId) {
  const versions = el("div", { id: "ds-versions" }, "loading…");
  const detail = el("div", { id: "ds-version" });
  view.append(el("p", {}, el("a", { href: "#/datasets" }, "← datasets")),
    el("div", { class: "panel" }, el("h2", {}, `Dataset ${datasetId}`), versions), detail);
  load(versions, "ListDatasetVersions", async () => {
    const response = await rpc("curation", "ListDatasetVersions", { datasetId, page: { pageSize: 200 } });
    const list = response.versions || [];
    if (list.length) showVersion(list[0].id);
    return table(["version", "kind", "examples#", "origin", "parent", "created"],
      list.map(v => ({ key: v.id, cells: [v.id, enumName(v.kind, "DATASET_KIND_"), v.exampleCount, enumName(v.lineage?.origin, "VERSION_ORIGIN_"), v.lineage?.parentVersionId, time(v.createdAt)] })),
      showVersion);
  });

  function showVersion(versionId) {
    const lineage = el("div", { id: "ds-lineage" }, "loading…"), stats = el("div", { id: "ds-stats" }, "loading…"), preview = el("div", { id: "ds-preview" }, "loading…");
    detail.replaceChildren(el("div", { class: "grid2" },
      el("div", { class: "panel" }, el("h2", {}, `Version ${versionId}`), lineage),
      el("div", { class: "panel" }, el("h2", {}, "Statistics"), stats)),
      el("div", { class: "panel" }, el("h2", {}, "Preview"), preview));
    load(lineage, "GetDatasetVersion", async () => {
      const v = (await rpc("curation", "GetDatasetVersion", { versionId })).version || {};
      const l = v.lineage || {};
      return [kv([["sha256", short(v.sha256, 20)], ["examples", v.exampleCount], ["splits", JSON.stringify(v.splitCounts || {})], ["origin", enumName(l.origin, "VERSION_ORIGIN_")],
        ["source", l.source], ["parent", l.parentVersionId], ["used by jobs", (v.usedByJobIds || []).join(", ")]]),
        el("h3", {}, "Lineage steps"),
        (l.steps || []).length ? el("ol", {}, l.steps.map(s => el("li", { class: "mono" }, JSON.stringify(s.step), s.result ? el("div", { class: "note" }, JSON.stringify(s.result)) : null))) : el("p", { class: "note" }, "no curation steps (an upload or import)"),
        v.validation ? validationReport(v.validation) : null];
    });
    load(stats, "GetStatistics", async () => {
      const s = (await rpc("curation", "GetStatistics", { versionId })).statistics || {};
      const splits = [s.overall, ...(s.splits || [])].filter(Boolean);
      return [table(["split", "examples#", "tokens#", "trained tokens#", "mean tokens#", "over max length#", "duplicates#"],
        splits.map(x => ({ cells: [enumName(x.split, "DATASET_SPLIT_") || "all", x.exampleCount, x.totalTokens, x.totalTrainedTokens, fmt(x.tokensPerExample?.mean), x.examplesOverMaxLength, x.exactDuplicateCount] }))),
        el("p", { class: "note" }, `tokenizer ${s.tokenizerModelId || "—"}, max length ${s.maxSeqLength}, recommended epochs ${s.recommendedEpochs}, estimated training tokens ${fmt(s.estimatedTrainingTokens)}`),
        s.overall?.messagesByRole ? barChart(Object.entries(s.overall.messagesByRole).map(([label, value]) => ({ label, value: num(value) }))) : null];
    });
    let tokens = [""];
    const showPage = index => load(preview, "PreviewExamples", async () => {
      const response = await rpc("curation", "PreviewExamples", { versionId, page: { pageSize: 10, pageToken: tokens[index] } });
      if (response.page?.nextPageToken) tokens[index + 1] = response.page.nextPageToken;
      const examples = response.examples || [];
      return [el("div", { class: "row" },
        el("button", { disabled: index === 0, onclick: () => showPage(index - 1) }, "← previous"),
        el("span", { class: "note" }, `page ${index + 1}${response.page?.totalSize ? ` of ${Math.ceil(num(response.page.totalSize) / 10)}` : ""}`),
        el("button", { disabled: !response.page?.nextPageToken, onclick: () => showPage(index + 1) }, "next →")),
        table(["#", "split", "example", "tokens#"], examples.map(e => ({ cells: [e.index, enumName(e.split, "DATASET_SPLIT_"),
          e.conversation ? el("div", {}, (e.conversation.messages || []).map(m => el("div", { class: "mono" }, el("b", {}, enumName(m.role, "CHAT_ROLE_") + ": "), m.content))) : el("pre", {}, e.text),
          e.tokenCount] })))];
    });
    showPage(0);
  }
}

// ---------------------------------------------------------------------------------------------- training

function trainingPage(arg) {
  if (arg) return jobPage(arg);
  const list = el("div", { id: "jobs" }, "loading…");
  const form = el("div", { id: "job-form" });
  view.append(el("div", { class: "panel" }, el("h2", {}, "Create a fine-tuning job"), form),
    el("div", { class: "panel" }, el("h2", {}, "Jobs"), list));
  every(() => load(list, "ListJobs", async () => {
    const jobs = (await rpc("training", "ListJobs", { page: { pageSize: 100 } })).jobs || [];
    if (!jobs.length) return el("p", { class: "note" }, "No job yet.");
    return table(["job", "status", "model", "method", "dataset", "progress", "loss#", "created"],
      jobs.map(j => ({ key: j.id, cells: [j.id, el("span", { class: "state " + j.state?.status }, enumName(j.state?.status, "JOB_STATUS_")), j.baseModelId,
        enumName(j.method, "TRAINING_METHOD_"), j.trainingDataset?.versionId, `${Math.round(num(j.state?.progress?.fraction) * 100)}%`, fmt(j.latestStepMetrics?.trainLoss), time(j.state?.createdAt)] })),
      id => location.hash = `#/training/${encodeURIComponent(id)}`);
  }), 3000);
  jobForm(form);
}

function jobForm(container) {
  const model = el("select", { id: "job-model" });
  const dataset = el("select", { id: "job-dataset" });
  const method = el("select", { id: "job-method" }, ["LORA", "QLORA", "FULL"].map(m => el("option", { value: "TRAINING_METHOD_" + m }, m)));
  const maxSteps = el("input", { id: "job-max-steps", type: "number", min: "1", value: "20" });
  const epochs = el("input", { id: "job-epochs", type: "number", min: "1", placeholder: "auto" });
  const lr = el("input", { id: "job-lr", type: "number", step: "any", placeholder: "auto" });
  const batch = el("input", { id: "job-batch", type: "number", min: "1", placeholder: "auto" });
  const rank = el("input", { id: "job-rank", type: "number", min: "1", placeholder: "auto" });
  const evalEvery = el("input", { id: "job-eval", type: "number", min: "1", placeholder: "auto" });
  const validation = el("input", { id: "job-validation", type: "number", step: "0.05", min: "0", max: "0.5", value: "0.2" });
  const suffix = el("input", { id: "job-suffix", placeholder: "suffix", value: "dashboard" });
  const estimate = el("button", { id: "job-estimate" }, "Estimate");
  const create = el("button", { class: "primary", id: "job-create" }, "Create job");
  const result = el("div", { id: "job-result" });
  container.append(el("div", { class: "row" },
    el("label", {}, "base model", model), el("label", {}, "training dataset", dataset), el("label", {}, "method", method),
    el("label", {}, "max steps", maxSteps), el("label", {}, "epochs", epochs), el("label", {}, "learning rate", lr), el("label", {}, "batch size", batch),
    el("label", {}, "LoRA rank", rank), el("label", {}, "eval every (steps)", evalEvery), el("label", {}, "validation fraction", validation), el("label", {}, "suffix", suffix)),
    el("div", { class: "row" }, estimate, create), result);
  load(model, "models", async () => ((await rpc("inference", "ListModels", {})).models || []).map(m => el("option", { value: m.id }, m.id)));
  load(dataset, "datasets", async () => {
    const datasets = (await rpc("curation", "ListDatasets", { page: { pageSize: 200 } })).datasets || [];
    return datasets.map(d => el("option", { value: d.latestVersionId }, `${d.name} (${d.latestVersionId})`));
  });
  const auto = (input, double) => input.value === "" ? undefined : { value: double ? Number(input.value) : String(Math.round(Number(input.value))) };
  function request(validateOnly) {
    const hyperparameters = { maxSteps: auto(maxSteps), epochs: auto(epochs), learningRate: auto(lr, true), batchSize: auto(batch), evalIntervalSteps: auto(evalEvery) };
    if (method.value !== "TRAINING_METHOD_FULL" && rank.value) hyperparameters.lora = { rank: auto(rank) };
    const r = { modelSource: { baseModelId: model.value }, trainingDataset: { versionId: dataset.value }, method: method.value,
      objective: "TRAINING_OBJECTIVE_SUPERVISED", hyperparameters, suffix: suffix.value, validateOnly };
    if (Number(validation.value) > 0) r.validation = { splitFraction: Number(validation.value) };
    return r;
  }
  estimate.addEventListener("click", () => load(result, "CreateJob (validate only)", async () => {
    const job = (await rpc("training", "CreateJob", request(true))).job || {};
    return el("div", {}, el("h3", {}, "Estimate"), el("pre", {}, JSON.stringify(job.estimate || {}, null, 1)), el("h3", {}, "Resolved hyperparameters"), el("pre", {}, JSON.stringify(job.hyperparameters || {}, null, 1)));
  }));
  create.addEventListener("click", () => load(result, "CreateJob", async () => {
    const job = (await rpc("training", "CreateJob", request(false))).job;
    location.hash = `#/training/${encodeURIComponent(job.id)}`;
  }));
}

function jobPage(jobId) {
  const header = el("div", { id: "job-header" }, "loading…");
  const cancel = el("button", { id: "job-cancel" }, "Cancel job");
  const lossChart = el("div", { id: "chart-loss" }), lrChart = el("div", { id: "chart-lr" });
  const events = el("div", { id: "job-events", class: "mono", style: "max-height:280px;overflow:auto" });
  const checkpoints = el("div", { id: "job-checkpoints" });
  const status = el("div", { id: "job-status" });
  view.append(el("p", {}, el("a", { href: "#/training" }, "← jobs")),
    el("div", { class: "panel" }, el("div", { class: "row" }, el("h2", {}, `Job ${jobId}`), cancel), header, status),
    el("div", { class: "grid2" }, el("div", { class: "panel" }, el("h2", {}, "Loss"), lossChart), el("div", { class: "panel" }, el("h2", {}, "Learning rate"), lrChart)),
    el("div", { class: "grid2" }, el("div", { class: "panel" }, el("h2", {}, "Events"), events), el("div", { class: "panel" }, el("h2", {}, "Checkpoints"), checkpoints)));
  const train = [], validationLoss = [], rates = [];
  let job = null;
  function draw() {
    lossChart.replaceChildren(lineChart([{ name: "train loss", points: train }, { name: "validation loss", points: validationLoss }], { xLabel: "step", id: "loss-svg" }));
    lrChart.replaceChildren(lineChart([{ name: "learning rate", points: rates }], { xLabel: "step", id: "lr-svg" }));
    lossChart.dataset.train = String(train.length); lossChart.dataset.validation = String(validationLoss.length);
  }
  function showJob() {
    const s = job.state || {}, p = s.progress || {}, m = job.latestStepMetrics || {};
    header.replaceChildren(kv([["status", el("span", { class: "state " + s.status, id: "job-state" }, enumName(s.status, "JOB_STATUS_"))], ["message", s.statusMessage],
      ["base model", job.baseModelId], ["method", enumName(job.method, "TRAINING_METHOD_")], ["dataset", job.trainingDataset?.versionId],
      ["progress", `${p.completed || 0} / ${p.total || "?"} ${p.unit || ""} (${Math.round(num(p.fraction) * 100)}%)`], ["eta", p.etaMs ? `${Math.round(num(p.etaMs) / 1000)} s` : ""],
      ["tokens/s", fmt(m.tokensPerSecond)], ["fine-tuned model", job.result?.fineTunedModelId], ["error", s.error?.message]]));
    cancel.disabled = ["JOB_STATUS_SUCCEEDED", "JOB_STATUS_FAILED", "JOB_STATUS_CANCELLED"].includes(s.status);
  }
  function addEvent(e) {
    if (e.stepMetrics) { train.push([num(e.stepMetrics.step), num(e.stepMetrics.trainLoss)]); rates.push([num(e.stepMetrics.step), num(e.stepMetrics.learningRate)]); }
    if (e.evalMetrics) validationLoss.push([num(e.evalMetrics.step), num(e.evalMetrics.validationLoss)]);
    if (e.checkpoint) refreshCheckpoints();
    if (e.statusChange && job) { job.state = job.state || {}; job.state.status = e.statusChange.to || e.statusChange.newStatus || job.state.status; showJob(); }
    const what = e.stepMetrics ? `step ${e.stepMetrics.step}: loss ${fmt(e.stepMetrics.trainLoss, 4)}, lr ${fmt(e.stepMetrics.learningRate)}`
      : e.evalMetrics ? `eval at step ${e.evalMetrics.step}: validation loss ${fmt(e.evalMetrics.validationLoss, 4)}` : e.message || JSON.stringify(e);
    events.prepend(el("div", {}, `${time(e.createdAt)} ${enumName(e.level, "EVENT_LEVEL_")} ${what}`));
  }
  const refreshCheckpoints = () => load(checkpoints, "ListCheckpoints", async () => {
    const list = (await rpc("training", "ListCheckpoints", { jobId })).checkpoints || [];
    if (!list.length) return el("p", { class: "note" }, "No checkpoint yet.");
    return table(["checkpoint", "step#", "epoch#", "best", "created"], list.map(c => ({ cells: [c.fineTunedModelCheckpointId || c.id, c.step, fmt(c.epoch), c.isBest ? "★" : "", time(c.createdAt)] })));
  });
  cancel.addEventListener("click", () => load(status, "CancelJob", async () => { job = (await rpc("training", "CancelJob", { jobId })).job || job; showJob(); return el("p", { class: "note" }, "Cancellation requested."); }));
  draw();
  refreshCheckpoints();
  let lastEventId = "";
  async function watch() {
    for (let attempt = 0; attempt < 50 && !pageAbort.signal.aborted; attempt++) {
      try {
        let redraw = null;
        await stream("training", "WatchJob", { jobId, afterEventId: lastEventId }, message => {
          if (message.job) { job = message.job; showJob(); }
          if (message.event) { lastEventId = message.event.eventId || lastEventId; addEvent(message.event); }
          if (!redraw) redraw = setTimeout(() => { redraw = null; draw(); }, 200);
        }, pageAbort.signal);
        draw();
        return;
      } catch (error) {
        if (error.name === "AbortError") return;
        status.replaceChildren(errorBox(error, "WatchJob"));
        if (error.http && error.http !== 200 && error.http !== 503) return;
        await new Promise(r => setTimeout(r, 2000));
      }
    }
  }
  watch();
}

// ---------------------------------------------------------------------------------------------- evaluation

function evaluationPage(arg) {
  if (arg) return reportPage(arg);
  const list = el("div", { id: "evals" }, "loading…");
  const comparison = el("div", { id: "eval-comparison" });
  const compare = el("button", { id: "eval-compare" }, "Compare selected");
  const form = el("div", { id: "eval-form" });
  view.append(el("div", { class: "panel" }, el("h2", {}, "Create an evaluation"), form),
    el("div", { class: "panel" }, el("h2", {}, "Evaluations"), list, el("div", { class: "row" }, compare)),
    el("div", { class: "panel" }, el("h2", {}, "Comparison"), comparison));
  const picked = new Set();
  const refresh = () => load(list, "ListEvaluations", async () => {
    const evals = (await rpc("evaluation", "ListEvaluations", { page: { pageSize: 100 } })).evaluations || [];
    if (!evals.length) return el("p", { class: "note" }, "No evaluation yet.");
    return table(["", "evaluation", "status", "model", "dataset", "examples#", "metrics", "mean latency#"],
      evals.map(e => ({ key: e.id, cells: [el("input", { type: "checkbox", class: "eval-pick", value: e.id, checked: picked.has(e.id), onclick: ev => { ev.stopPropagation(); ev.target.checked ? picked.add(e.id) : picked.delete(e.id); } }),
        el("a", { href: `#/evaluation/${encodeURIComponent(e.id)}` }, e.displayName || e.id), el("span", { class: "state " + e.state?.status }, enumName(e.state?.status, "JOB_STATUS_")),
        targetName(e.target), e.dataset?.versionId, `${e.examplesScored}/${e.exampleCount}`,
        Object.entries(e.aggregates || {}).map(([k, v]) => `${k} ${fmt(v.value)}`).join(", "), ms(e.meanLatencyMs)] })));
  });
  every(refresh, 3000);
  evaluationForm(form, refresh);
  compare.addEventListener("click", () => load(comparison, "CompareEvaluations", async () => {
    const ids = [...picked];
    const c = (await rpc("evaluation", "CompareEvaluations", { evaluationIds: ids })).comparison || {};
    return [el("p", { class: "note" }, `${c.sharedExampleCount} shared examples; significance ${c.significanceLevel}`),
      ...(c.metrics || []).map(m => el("div", {}, el("h3", {}, m.metric),
        table(["evaluation", "value#", "95% CI"], (m.values || []).map((v, i) => ({ cells: [c.evaluationIds[i], fmt(v.value), `[${fmt(v.ciLower)}, ${fmt(v.ciUpper)}]`] }))),
        table(["A", "B", "B − A#", "CI", "p#", "significant"], (m.differences || []).map(d => ({ cells: [d.evaluationIdA, d.evaluationIdB, fmt(d.difference), `[${fmt(d.ciLower)}, ${fmt(d.ciUpper)}]`, fmt(d.pValue), d.significant ? "yes" : "no"] })))))];
  }));
}

/** CreateEvaluation from a form: target model or adapter, dataset version and split, metrics, generation, base arm. */
function evaluationForm(container, refresh) {
  const name = el("input", { id: "ev-name", placeholder: "display name" });
  const model = el("select", { id: "ev-model", dataset: { field: "target" } });
  const dataset = el("select", { id: "ev-dataset", dataset: { field: "dataset" } });
  const split = el("select", { id: "ev-split", dataset: { field: "dataset.split" } },
    [["", "auto (test, else validation, else all)"], ["DATASET_SPLIT_TEST", "test"], ["DATASET_SPLIT_VALIDATION", "validation"], ["DATASET_SPLIT_TRAIN", "train"]].map(([v, t]) => el("option", { value: v }, t)));
  const metrics = metricBoxes("ev");
  const maxTokens = el("input", { id: "ev-max-tokens", type: "number", value: "16", dataset: { field: "generation.sampling.max_new_tokens" } });
  const temperature = el("input", { id: "ev-temperature", type: "number", step: "0.1", value: "0", dataset: { field: "generation.sampling.temperature" } });
  const stop = el("input", { id: "ev-stop", value: "\\n", size: "6", title: "stop string (\\n is a newline)" });
  const limit = el("input", { id: "ev-limit", type: "number", value: "0", title: "0 = every example", dataset: { field: "sample_limit" } });
  const baseArm = el("input", { id: "ev-base-arm", type: "checkbox" });
  const create = el("button", { class: "primary", id: "ev-create" }, "Create evaluation");
  const result = el("div", { id: "ev-result" });
  container.append(el("div", { class: "row" },
    el("label", {}, "name", name), el("label", {}, "model or adapter", model), el("label", {}, "dataset version", dataset), el("label", {}, "split", split),
    el("label", {}, "max new tokens", maxTokens), el("label", {}, "temperature", temperature), el("label", {}, "stop", stop), el("label", {}, "examples (0 = all)", limit),
    el("label", { class: "check" }, baseArm, "also the base model (base arm)")),
    el("div", { class: "row" }, el("span", { class: "note" }, "metrics:"), metrics), el("div", { class: "row" }, create), result);
  load(model, "models", () => modelOptions(result));
  load(dataset, "datasets", datasetOptions);
  create.addEventListener("click", () => submitForm(container, result, "CreateEvaluation", async () => {
    const sampling = { maxNewTokens: Number(maxTokens.value), temperature: Number(temperature.value) };
    if (stop.value) sampling.stop = [stop.value.replace(/\\n/g, "\n")];
    const request = { displayName: name.value, target: { model: model.value ? JSON.parse(model.value) : {} },
      dataset: { versionId: dataset.value, split: split.value || undefined }, metrics: checkedMetrics(metrics),
      generation: { sampling }, sampleLimit: String(Math.trunc(Number(limit.value))), includeBaseArm: baseArm.checked };
    const created = await rpc("evaluation", "CreateEvaluation", request);
    refresh();
    const made = [created.evaluation, created.baseEvaluation].filter(Boolean);
    return el("p", { class: "note", dataset: { created: made.map(e => e.id).join(" ") } }, "Created ",
      made.map((e, i) => [i ? " and " : "", el("a", { href: `#/evaluation/${encodeURIComponent(e.id)}` }, e.id)]), ": it runs as a job; its report appears when it is done.");
  }));
}

function targetName(t) {
  if (!t) return "";
  const m = t.model || {};
  return (m.fineTunedModelId || m.baseModelId || JSON.stringify(m)) + (m.adapterId ? ` + ${m.adapterId}` : "") + (t.rag ? " + RAG" : "");
}

const TERMINAL = ["JOB_STATUS_SUCCEEDED", "JOB_STATUS_FAILED", "JOB_STATUS_CANCELLED"];

function reportPage(evaluationId) {
  const state = el("div", { id: "eval-state" }, "loading…");
  const report = el("div", { id: "eval-report" });
  view.append(el("p", {}, el("a", { href: "#/evaluation" }, "← evaluations")), el("div", { class: "panel" }, el("h2", {}, `Evaluation ${evaluationId}`), state, report));
  let shown = false;
  // The evaluation runs as a job: its state until it ends, then the full report (once).
  const poll = () => load(state, "GetEvaluation", async () => {
    if (shown) return undefined;
    const e = (await rpc("evaluation", "GetEvaluation", { evaluationId })).evaluation || {};
    const s = e.state || {}, p = s.progress || {};
    if (TERMINAL.includes(s.status)) { shown = true; showReport(); }
    return el("p", { class: "note" }, el("span", { class: "state " + s.status, id: "eval-status" }, enumName(s.status, "JOB_STATUS_")),
      ` — ${targetName(e.target)} on ${e.dataset?.versionId || ""}, ${e.examplesScored || 0}/${e.exampleCount || p.total || "?"} examples`,
      s.error?.message ? el("span", { class: "error" }, ` ${s.error.message}`) : null);
  });
  const showReport = () => load(report, "GetReport", async () => {
    const r = await rpc("evaluation", "GetReport", { evaluationId, page: { pageSize: 50 } });
    const rep = r.report || {};
    const aggregates = Object.entries(rep.aggregates || {});
    return [el("p", { class: "note" }, `${rep.exampleCount} examples${rep.partial ? " (partial)" : ""}; ${Math.round(num(rep.confidenceLevel) * 100)}% bootstrap intervals over ${rep.bootstrapResamples} resamples`),
      table(["metric", "value#", "CI low#", "CI high#", "n#"], aggregates.map(([k, v]) => ({ key: k, cells: [k, fmt(v.value, 4), fmt(v.ciLower, 4), fmt(v.ciUpper, 4), v.sampleCount] }))),
      aggregates.length ? barChart(aggregates.map(([label, v]) => ({ label, value: num(v.value) }))) : null,
      el("h3", {}, "Examples"),
      table(["#", "input", "reference", "prediction", "scores", "latency#"], (r.examples || []).map(x => ({ cells: [x.index,
        short((x.input || []).map(m => m.content).join("\n"), 300), short(x.reference, 200), x.error?.message ? el("span", { class: "error" }, x.error.message) : short(x.prediction, 300),
        Object.entries(x.scores || {}).map(([k, v]) => `${k} ${fmt(v)}`).join(", "), ms(x.latencyMs)] })))];
  });
  every(poll, 2000);
}

// ---------------------------------------------------------------------------------------------- compare (retrieval)

function comparePage(arg) {
  if (arg) return comparisonPage(arg);
  const list = el("div", { id: "comparisons" }, "loading…");
  const form = el("div", { id: "cmp-form" });
  view.append(el("div", { class: "panel" }, el("h2", {}, "Start a comparison"), form),
    el("div", { class: "panel" }, el("h2", {}, "Comparisons: base, fine-tuned, RAG, RAFT side by side"), list));
  const refresh = () => load(list, "ListComparisons", async () => {
    const comparisons = (await rpc("retrieval", "ListComparisons", { page: { pageSize: 100 } })).comparisons || [];
    if (!comparisons.length) return el("p", { class: "note" }, "No comparison yet.");
    return table(["comparison", "status", "questions#", "arms", "created"],
      comparisons.map(c => ({ key: c.id, cells: [c.displayName || c.id, el("span", { class: "state " + c.state?.status }, enumName(c.state?.status, "JOB_STATUS_")), c.questionCount,
        (c.arms || []).map(a => a.name).join(", "), time(c.state?.createdAt)] })),
      id => location.hash = `#/compare/${encodeURIComponent(id)}`);
  });
  every(refresh, 3000);
  comparisonForm(form, refresh);
}

/** The arm kinds of retrieval.proto; the *_RAG kinds retrieve from the arm's collection. */
const ARM_KINDS = [["", "— unused —"], ["ARM_KIND_BASE", "base"], ["ARM_KIND_BASE_RAG", "base + RAG"], ["ARM_KIND_FINE_TUNED", "fine-tuned"],
  ["ARM_KIND_FINE_TUNED_RAG", "fine-tuned + RAG"], ["ARM_KIND_RAFT_RAG", "RAFT + RAG"], ["ARM_KIND_CUSTOM", "custom"]];

/** CreateComparison from a form: a question set, up to four arms (kind, model, collection), metrics and generation. */
function comparisonForm(container, refresh) {
  const name = el("input", { id: "cmp-name", placeholder: "display name" });
  const questions = el("select", { id: "cmp-questions", dataset: { field: "questions" } });
  const metrics = metricBoxes("cmp");
  const maxTokens = el("input", { id: "cmp-max-tokens", type: "number", value: "16", dataset: { field: "sampling.max_new_tokens" } });
  const limit = el("input", { id: "cmp-limit", type: "number", value: "0", dataset: { field: "sample_limit" } });
  const topK = el("input", { id: "cmp-top-k", type: "number", value: "3", min: "1" });
  const create = el("button", { class: "primary", id: "cmp-create" }, "Start comparison");
  const result = el("div", { id: "cmp-result" });
  const arms = [0, 1, 2, 3].map(i => ({
    name: el("input", { class: "arm-name", placeholder: "name (default from kind)", size: "14" }),
    kind: el("select", { class: "arm-kind" }, ARM_KINDS.map(([v, t]) => el("option", { value: v, selected: v === ["ARM_KIND_BASE", "ARM_KIND_BASE_RAG", "", ""][i] }, t))),
    model: el("select", { class: "arm-model" }),
    collection: el("select", { class: "arm-collection" }),
  }));
  container.append(el("div", { class: "row" }, el("label", {}, "name", name), el("label", {}, "questions (dataset version)", questions),
      el("label", {}, "max new tokens", maxTokens), el("label", {}, "questions to use (0 = all)", limit), el("label", {}, "chunks per RAG arm", topK)),
    el("div", { class: "row" }, el("span", { class: "note" }, "metrics:"), metrics),
    el("table", { id: "cmp-arms" }, el("thead", {}, el("tr", {}, ["arm", "kind", "model or adapter", "collection (RAG kinds)"].map(h => el("th", {}, h)))),
      el("tbody", {}, arms.map((a, i) => el("tr", { dataset: { arm: String(i), field: `arms[${i}]` } }, el("td", {}, a.name), el("td", {}, a.kind), el("td", {}, a.model), el("td", {}, a.collection))))),
    el("div", { class: "row" }, create), result);
  load(questions, "datasets", datasetOptions);
  modelOptions(result).then(options => arms.forEach(a => a.model.replaceChildren(...options.map(o => o.cloneNode(true))))).catch(error => result.append(errorBox(error, "models")));
  rpc("retrieval", "ListCollections", { page: { pageSize: 200 } }).then(r => arms.forEach(a => a.collection.replaceChildren(el("option", { value: "" }, "—"),
    ...(r.collections || []).map(c => el("option", { value: c.id }, `${c.name} (${c.documentCount} documents)`))))).catch(error => result.append(errorBox(error, "collections")));
  create.addEventListener("click", () => submitForm(container, result, "CreateComparison", async () => {
    const request = { displayName: name.value, questions: { versionId: questions.value }, metrics: checkedMetrics(metrics),
      sampling: { maxNewTokens: Number(maxTokens.value), temperature: 0, stop: ["\n"] }, sampleLimit: String(Math.trunc(Number(limit.value))), arms: [] };
    for (const a of arms.filter(a => a.kind.value)) {
      const arm = { name: a.name.value, kind: a.kind.value, model: a.model.value ? JSON.parse(a.model.value) : {} };
      // The collection is sent when one is chosen, so a kind that does not retrieve is refused by the service, naming the field.
      if (a.collection.value) arm.rag = { retrieval: { collectionId: a.collection.value, topK: Number(topK.value) } };
      if (a.kind.value === "ARM_KIND_RAFT_RAG" && arm.rag) arm.rag.prompt = { chunkTemplate: "<DOCUMENT>{text}</DOCUMENT>", promptTemplate: "{context}\n{question}" };
      request.arms.push(arm);
    }
    const c = (await rpc("retrieval", "CreateComparison", request)).comparison;
    refresh();
    return el("p", { class: "note", dataset: { created: c.id } }, "Started ", el("a", { href: `#/compare/${encodeURIComponent(c.id)}` }, c.id),
      ` with ${(c.arms || []).length} arms: it runs as a job; its results appear in the list when it is done.`);
  }));
}

function comparisonPage(comparisonId) {
  const summary = el("div", { id: "cmp-summary" }, "loading…");
  const rows = el("div", { id: "cmp-rows" }, "loading…");
  view.append(el("p", {}, el("a", { href: "#/compare" }, "← comparisons")),
    el("div", { class: "panel" }, el("h2", {}, `Comparison ${comparisonId}`), summary), el("div", { class: "panel" }, el("h2", {}, "Per question"), rows));
  load(summary, "GetComparison", async () => {
    const c = (await rpc("retrieval", "GetComparison", { comparisonId })).comparison || {};
    const summaries = c.armSummaries || [];
    const metrics = [...new Set(summaries.flatMap(s => Object.keys(s.metrics || {})))];
    return [table(["arm", "kind", ...metrics.map(m => m + "#"), "answered#", "failed#", "mean latency#", "p95 latency#", "retrieval#"],
      summaries.map(s => ({ cells: [s.armName, enumName(s.kind, "ARM_KIND_"), ...metrics.map(m => s.metrics?.[m] ? `${fmt(s.metrics[m].value)} [${fmt(s.metrics[m].ciLower)}, ${fmt(s.metrics[m].ciUpper)}]` : ""),
        s.questionsAnswered, s.questionsFailed, ms(s.meanLatencyMs), ms(s.p95LatencyMs), ms(s.meanRetrievalMs)] }))),
      ...metrics.slice(0, 2).map(m => el("div", {}, el("h3", {}, m), barChart(summaries.map((s, i) => ({ label: s.armName, value: num(s.metrics?.[m]?.value), color: PALETTE[i % PALETTE.length] }))))),
      (c.differences || []).length ? el("pre", {}, JSON.stringify(c.differences, null, 1)) : null];
  });
  load(rows, "GetComparisonResults", async () => {
    const r = await rpc("retrieval", "GetComparisonResults", { comparisonId, page: { pageSize: 20 } });
    return (r.rows || []).map(row => el("div", { class: "panel cmp-row" },
      el("p", {}, el("b", {}, `Q${row.index}: `), row.question), row.reference ? el("p", { class: "note" }, `reference: ${row.reference}`) : null,
      el("div", { class: "arms", style: `grid-template-columns:repeat(${Math.max(1, (row.answers || []).length)}, 1fr)` },
        (row.answers || []).map(a => el("div", { class: "arm" },
          el("div", {}, el("span", { class: "tag" }, a.armName), " ", el("span", { class: "note" }, `${ms(a.latencyMs)}${a.retrievalMs ? `, retrieval ${ms(a.retrievalMs)}` : ""}`)),
          a.error?.message ? el("div", { class: "error" }, a.error.message) : el("p", {}, a.answer),
          el("div", { class: "note" }, Object.entries(a.scores || {}).map(([k, v]) => `${k} ${fmt(v)}`).join(" · ")),
          (a.retrieved || []).length ? el("details", {}, el("summary", {}, `${a.retrieved.length} retrieved chunks`),
            a.retrieved.map(ch => el("div", { class: "mono" }, el("b", {}, `#${ch.rank} ${fmt(ch.score)} ${ch.source}`), "\n", short(ch.text, 500)))) : null)))));
  });
}

// ---------------------------------------------------------------------------------------------- traces and metrics

function tracesPage(traceId) {
  const filter = el("select", { id: "trace-service" }, el("option", { value: "" }, "all services"));
  const list = el("div", { id: "traces" }, "loading…");
  const detail = el("div", { id: "trace-detail" });
  view.append(el("div", { class: "panel" }, el("div", { class: "row" }, el("h2", {}, "Traces"), el("label", {}, "service", filter)),
    el("p", { class: "note" }, "Spans the services export over OTLP (ASP.NET Core server spans, HttpClient client spans, the dashboard's own calls), newest first."), list), detail);
  const services = new Set();
  const refresh = () => load(list, "traces", async () => {
    const response = await fetch(`/api/telemetry/traces?service=${encodeURIComponent(filter.value)}`);
    const traces = await response.json();
    for (const t of traces) for (const s of t.services) if (!services.has(s)) { services.add(s); filter.append(el("option", { value: s }, s)); }
    if (!traces.length) return el("p", { class: "note" }, "No span received yet.");
    return table(["trace", "root span", "services", "spans#", "duration#", "status", "started"],
      traces.slice(0, 200).map(t => ({ key: t.traceId, cells: [t.traceId.slice(0, 12), t.rootName, t.services.join(", "), t.spanCount, ms(t.durationMs), t.error ? el("span", { class: "Failed" }, "error") : "ok", time(t.start)] })),
      id => location.hash = `#/traces/${id}`);
  });
  filter.addEventListener("change", refresh);
  every(refresh, 3000);
  if (traceId) showTrace(traceId, detail);
}

async function showTrace(traceId, container) {
  await load(container, "trace", async () => {
    const response = await fetch(`/api/telemetry/traces/${encodeURIComponent(traceId)}`);
    if (!response.ok) throw new RpcError(response.status, { status: "NOT_FOUND", message: `trace ${traceId} is not retained` });
    const spans = await response.json();
    const t0 = Math.min(...spans.map(s => s.startUnixMs)), t1 = Math.max(...spans.map(s => s.startUnixMs + s.durationMs));
    const byId = new Map(spans.map(s => [s.spanId, s]));
    const depth = s => { let d = 0; for (let p = byId.get(s.parentSpanId); p && d < 20; p = byId.get(p.parentSpanId)) d++; return d; };
    return el("div", { class: "panel" }, el("h2", {}, `Trace ${traceId}`),
      table(["span", "service", "kind", "duration#", "status", "timeline", "attributes"], spans.map(s => ({ cells: [
        el("span", { style: `padding-left:${depth(s) * 14}px` }, s.name), s.service, s.kind, ms(s.durationMs), s.status,
        el("div", { style: "width:240px;position:relative;height:10px" }, el("div", { class: "span-bar" + (s.status === "ERROR" ? " error" : ""),
          style: `position:absolute;left:${(s.startUnixMs - t0) / Math.max(1e-9, t1 - t0) * 240}px;width:${Math.max(2, s.durationMs / Math.max(1e-9, t1 - t0) * 240)}px` })),
        el("span", { class: "mono" }, Object.entries(s.attributes || {}).map(([k, v]) => `${k}=${v}`).join("\n"))] }))));
  });
}

function metricsPage() {
  const container = el("div", { id: "metrics" }, "loading…");
  view.append(el("div", { class: "panel" }, el("h2", {}, "Metrics"),
    el("p", { class: "note" }, "From the services' meters (ASP.NET Core, Kestrel, HttpClient, the .NET runtime), exported over OTLP every few seconds."), container));
  every(() => load(container, "metrics", async () => {
    const series = await (await fetch("/api/telemetry/metrics")).json();
    if (!series.length) return el("p", { class: "note" }, "No metric received yet.");
    const wanted = ["http.server.request.duration", "http.client.request.duration", "kestrel.active_connections", "dotnet.gc.heap.total_allocated", "dotnet.process.memory.working_set", "dotnet.thread_pool.thread.count", "dotnet.process.cpu.time"];
    const charts = [];
    for (const name of wanted) {
      const group = series.filter(s => s.name === name);
      if (!group.length) continue;
      charts.push(el("div", { class: "panel metric", dataset: { metric: name } }, el("h3", {}, `${name} (${group[0].unit || ""}) — ${group[0].kind}`),
        lineChart(group.map(s => ({ name: s.service, points: s.points.map(p => [(p[0] - Date.now()) / 1000, p[1]]) })), { xLabel: "seconds ago", height: 180 })));
    }
    return [el("div", { class: "grid2" }, charts),
      el("h3", {}, "All instruments"),
      table(["service", "metric", "kind", "unit", "last value#", "points#"], series.map(s => ({ cells: [s.service, s.name, s.kind, s.unit, fmt(s.points.at(-1)?.[1]), s.points.length] })))];
  }), 5000);
}

// ---------------------------------------------------------------------------------------------- API explorer

function apiPage() {
  const method = el("select", { id: "api-method" });
  const body = el("textarea", { id: "api-body", rows: "8" }, "{}");
  const send = el("button", { class: "primary", id: "api-send" }, "Call");
  const out = el("pre", { id: "api-out" });
  view.append(el("div", { class: "panel" }, el("h2", {}, "Call any RPC"),
    el("p", { class: "note" }, "The request in protobuf's JSON mapping; a client-streaming call takes a JSON array; a server-streaming call shows each message as it arrives."),
    el("div", { class: "row" }, el("label", {}, "method", method), send), body, out));
  load(method, "services", async () => {
    const services = await (await fetch("/api/services")).json();
    return services.map(s => el("optgroup", { label: `${s.name} (${s.endpoint})` },
      s.methods.map(m => el("option", { value: `${s.name}/${m.name}`, dataset: { kind: m.kind } }, `${m.name} — ${m.kind.replace("_", " ")}`))));
  });
  send.addEventListener("click", async () => {
    const [service, name] = method.value.split("/");
    const kind = method.selectedOptions[0]?.dataset.kind;
    out.textContent = "";
    try {
      const request = JSON.parse(body.value || "{}");
      if (kind === "server_streaming") await stream(service, name, request, m => out.textContent += JSON.stringify(m) + "\n", pageAbort.signal);
      else out.textContent = JSON.stringify(await rpc(service, name, request), null, 2);
    } catch (error) {
      out.replaceChildren(errorBox(error.http ? error : { message: error.message }, `${service}/${name}`));
    }
  });
}

refreshSummary();
route();
