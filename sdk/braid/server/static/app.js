// braid feature discovery page: plain JS over /api (no framework, no CDN, works offline).
// Routes: #/ (search), #/view/NAME, #/service/NAME, #/lineage/KIND:NAME.
// Every text goes through textContent (h()), never innerHTML, so names cannot inject markup.
"use strict";

const main = document.getElementById("main");
const SVG = "http://www.w3.org/2000/svg";

function h(tag, attrs, ...kids) {
  const el = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4))
                                    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else el.setAttribute(k, v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

async function api(path) {
  const r = await fetch(path);
  const body = await r.json();
  if (!r.ok) throw new Error(body.detail || r.statusText);
  return body;
}

const fmtTime = (ms) => ms === null || ms === undefined ? "-"
  : new Date(ms).toISOString().replace(".000Z", "Z").replace("T", " ");
function fmtDur(ms) {
  if (!ms) return "-";
  for (const [u, s] of [["d", 864e5], ["h", 36e5], ["m", 6e4], ["s", 1e3]]) {
    if (ms % s === 0) return ms / s + u;
  }
  return ms + "ms";
}
function fmtAge(ms) {
  for (const [u, size] of [["d", 864e5], ["h", 36e5], ["m", 6e4]]) {
    if (Math.abs(ms) >= 2 * size || u === "m") return Math.round(ms / size) + u;
  }
}
const fmtNum = (v) => typeof v === "number" ? (Number.isInteger(v) ? String(v)
  : String(Number(v.toPrecision(6)))) : (v === null || v === undefined ? "-" : String(v));
const tags = (t) => Object.entries(t || {}).map(([k, v]) => h("span", {class: "tag"}, `${k}=${v}`));
const kindBadge = (k) => h("span", {class: "kind"}, k);

function link(kind, name) {
  if (kind === "view" || kind === "feature") {
    const [view, feature] = name.split(":");
    return h("a", {href: `#/view/${encodeURIComponent(view)}`}, feature ? `${view}:${feature}` : view);
  }
  if (kind === "service") return h("a", {href: `#/service/${encodeURIComponent(name)}`}, name);
  return h("a", {href: `#/lineage/${encodeURIComponent(kind + ":" + name)}`}, name);
}

function table(head, rows, numeric = []) {
  return h("table", {}, h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) =>
      h("td", {class: numeric.includes(i) ? "num" : null}, c))))));
}

function facts(pairs) {
  return h("dl", {class: "facts"}, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function render(...parts) {
  main.replaceChildren(...parts.flat(2).filter((p) => p !== null && p !== undefined));
}

function showError(err) {
  render(h("p", {class: "error", id: "error"}, err.message || String(err)));
}

// ------------------------------------------------------------------ search

let searchSeq = 0;
async function runSearch() {
  const q = document.getElementById("q").value;
  const params = new URLSearchParams({q, limit: "50"});
  for (const f of ["tag", "owner", "entity"]) {
    const v = document.getElementById("f-" + f).value.trim();
    if (v) params.set(f, v);
  }
  const seq = ++searchSeq;
  try {
    const res = await api("/api/features?" + params);
    if (seq !== searchSeq) return;  // a newer keystroke already answered
    const items = res.hits.map((hit) => h("li", {class: "hit", "data-kind": hit.kind},
      kindBadge(hit.kind), link(hit.kind, hit.name), " ",
      h("span", {class: "muted"}, `matched ${hit.field}: ${hit.matched || "-"}`),
      hit.description ? h("div", {class: "muted"}, hit.description) : null));
    render(h("h2", {}, q ? `Results for "${q}"` : "Everything"),
      items.length ? h("ul", {class: "hits", id: "hits"}, items)
                   : h("p", {id: "hits", class: "muted"}, `No match for "${q}".`));
  } catch (err) { showError(err); }
}

let timer = null;
function onType() {
  clearTimeout(timer);
  timer = setTimeout(() => {
    if (!location.hash.startsWith("#/search") && location.hash !== "" && location.hash !== "#/") {
      history.replaceState(null, "", "#/search");
    }
    runSearch();
  }, 120);
}

// ------------------------------------------------------------------ lineage graph

function lineageSvg(graph) {
  const W = 170, GAP = 60, NH = 34, VGAP = 14;
  const cols = {};
  for (const n of graph.nodes) (cols[n.column] = cols[n.column] || []).push(n);
  const pos = {};
  let maxRows = 1;
  for (const [c, nodes] of Object.entries(cols)) {
    nodes.forEach((n, i) => { pos[n.id] = {x: 10 + c * (W + GAP), y: 10 + i * (NH + VGAP)}; });
    maxRows = Math.max(maxRows, nodes.length);
  }
  const ncols = Math.max(...graph.nodes.map((n) => n.column)) + 1;
  const svg = h("svg:svg", {class: "lineage", id: "lineage", width: ncols * (W + GAP),
                            height: maxRows * (NH + VGAP) + 10});
  for (const e of graph.edges) {
    const a = pos[e.src], b = pos[e.dst];
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2, mx = (x1 + x2) / 2;
    svg.append(h("svg:path", {class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`,
                              "data-edge": `${e.src}->${e.dst}`}));
  }
  for (const n of graph.nodes) {
    const p = pos[n.id];
    const g = h("svg:g", {class: "node" + (n.focus ? " focus" : ""), "data-node": n.id,
                          transform: `translate(${p.x},${p.y})`, style: "cursor:pointer"},
      h("svg:rect", {width: W, height: NH, rx: 5}),
      h("svg:text", {x: 8, y: 13, class: "k"}, n.kind),
      h("svg:text", {x: 8, y: 27}, n.name.length > 24 ? n.name.slice(0, 23) + "…" : n.name));
    g.addEventListener("click", () => { location.hash = link(n.kind, n.name).getAttribute("href"); });
    svg.append(g);
  }
  return svg;
}

// ------------------------------------------------------------------ statistics

function histogram(body) {
  let bins = [];
  if (body.histogram && body.histogram.edges) {
    const {edges, counts} = body.histogram;
    bins = counts.map((c, i) => ({lo: edges[i], hi: edges[i + 1], h: c}));
  } else if (body.quantiles) {
    const qs = Array.isArray(body.quantiles) ? body.quantiles
      : Object.entries(body.quantiles).map(([q, v]) => [Number(q), v]);
    qs.sort((a, b) => a[0] - b[0]);
    for (let i = 0; i + 1 < qs.length; i++) {
      const width = qs[i + 1][1] - qs[i][1];
      bins.push({lo: qs[i][1], hi: qs[i + 1][1],
                 h: width > 0 ? (qs[i + 1][0] - qs[i][0]) / width : 0});
    }
  }
  if (!bins.length) return null;
  const W = 240, H = 60, top = Math.max(...bins.map((b) => b.h)) || 1;
  const lo = bins[0].lo, span = (bins[bins.length - 1].hi - lo) || 1;
  const svg = h("svg:svg", {width: W, height: H + 14, class: "histogram"});
  for (const b of bins) {
    const x = ((b.lo - lo) / span) * W, w = Math.max(1, ((b.hi - b.lo) / span) * W - 1);
    const bh = (b.h / top) * H;
    svg.append(h("svg:rect", {class: "bar", x, y: H - bh, width: w, height: bh}));
  }
  svg.append(h("svg:text", {x: 0, y: H + 12, "font-size": 10}, fmtNum(lo)),
             h("svg:text", {x: W, y: H + 12, "font-size": 10, "text-anchor": "end"},
               fmtNum(bins[bins.length - 1].hi)));
  return svg;
}

function statsSection(stats) {
  const rows = Object.entries(stats || {}).filter(([, s]) => s);
  if (!rows.length) return h("p", {class: "muted", id: "stats"}, "No statistics snapshot yet.");
  return h("div", {id: "stats"}, table(
    ["feature", "count", "nulls", "mean", "std", "min", "max", "distribution", "data range"],
    rows.map(([name, s]) => [name, fmtNum(s.body.count), fmtNum(s.body.nulls),
      fmtNum(s.body.mean), fmtNum(s.body.std), fmtNum(s.body.min), fmtNum(s.body.max),
      histogram(s.body) || "-", `${fmtTime(s.start)} .. ${fmtTime(s.end)} (${s.origin})`]),
    [1, 2, 3, 4, 5, 6]));
}

// ------------------------------------------------------------------ pages

function versions(list) {
  return table(["version", "created", "content hash", "plan hash"],
    list.map((v) => [String(v.version) + (v.deleted ? " (removed)" : ""), fmtTime(v.created_at),
                     v.content_hash.slice(0, 12), v.plan_hash || "-"]));
}

// braid_streaming.runner.STREAM_OWNS_ALL (-2**50) plus a day of tile rounding.
const STREAM_OWNS_ALL = -(2 ** 50) + 864e5;

function freshnessSection(f) {
  const cov = f.backfilled.length
    ? f.backfilled.map(([a, b]) => `${fmtTime(a)} .. ${fmtTime(b)}`).join(", ") : "none";
  const cut = Object.entries(f.cutoffs).map(([hop, c]) => `hop ${fmtDur(Number(hop))}: ` +
    (c <= STREAM_OWNS_ALL ? "-inf (the stream owns every tile)" : fmtTime(c)));
  const age = f.materialized_age_ms === null ? "" : ` (${fmtAge(f.materialized_age_ms)} ago)`;
  return h("div", {class: "card", id: "freshness"}, facts([
    ["namespace", f.namespace || "-"], ["backfilled", cov],
    ["ownership cutoff", cut.length ? cut.join("; ") : "none (batch owns every tile)"],
    ["materialized until", fmtTime(f.materialized) + age],
    ...streamFacts(f.stream || {}),
  ]));
}

const ENGINES = {embedded: "embedded runner", flink: "Flink (online writer)"};

// The stream side of freshness (braid_streaming.freshness): engine, last event, lag, DLQ.
function streamFacts(s) {
  if (!Object.keys(s).length) return [["stream", "batch source (no stream)"]];
  const engine = s.engine ? `${ENGINES[s.engine] || s.engine}` +
    (s.runner_group ? ` (group ${s.runner_group}, ${s.instances.length} instance` +
                      `${s.instances.length === 1 ? "" : "s"})` : "")
    : "none (nothing streamed yet)";
  const last = s.last_event_ms === null ? "-"
    : fmtTime(s.last_event_ms) + ` (${fmtAge(s.last_event_age_ms)} ago)`;
  const parts = Object.entries(s.partitions).map(([p, v]) =>
    `p${p} ${v.committed === null ? "-" : v.committed}/${v.end === null ? "-" : v.end}`);
  const lag = (s.lag === null ? "-" : `${s.lag} record${s.lag === 1 ? "" : "s"}`) +
    (parts.length ? ` (${s.offsets_topic}: ${parts.join(", ")})` : "");
  const dl = s.dead_letters || {};
  const reasons = Object.entries(dl.by_reason || {}).map(([r, n]) => `${r}: ${n}`);
  const letters = dl.total ? `${dl.total} (${reasons.join(", ")})` : "0";
  return [
    ["stream engine", engine],
    ["last streamed event", last],
    ["stream lag", lag],
    ["dead letters", letters + (dl.capped ? ` (first ${dl.scanned} letters read)` : "")],
    ...(s.errors && s.errors.length ? [["stream errors", s.errors.join("; ")]] : []),
  ];
}

async function viewPage(name) {
  const v = await api(`/api/views/${encodeURIComponent(name)}`);  // its error names the view
  const graph = await api(`/api/lineage/${encodeURIComponent("view:" + v.name)}`);
  const src = v.source || {};
  render(
    h("div", {}, kindBadge("view"), h("h1", {id: "title"}, v.name)),
    h("p", {}, v.description || "(no description)"),
    h("div", {class: "grid"}, h("div", {class: "card"}, facts([
      ["owner", v.owner || "-"], ["tags", tags(v.tags)],
      ["entities", v.entities.map((e) => `${e.name} (${Object.entries(e.join_keys).map(([k, t]) => k + ": " + t).join(", ")})`).join(", ")],
      ["source", `${src.name} (${src.topic ? "topic " + src.topic : src.path || src.query || "?"}; time: ${src.timestamp_field})`],
      ["filter", v.filter || "-"], ["ttl", fmtDur(v.ttl_ms)],
      ["version", `${v.version} (serving namespace ${v.serving_namespace || "-"})`],
    ])), freshnessSection(v.freshness)),
    v.features.length ? [h("h2", {}, "Projections"), h("div", {id: "schema"}, table(
      ["name", "dtype", "expression", "default"],
      v.features.map((f) => [f.name, f.dtype, f.expr || f.name, fmtNum(f.default)])))] : null,
    v.aggregations.length ? [h("h2", {}, "Windows"), h("div", {id: "windows"}, table(
      ["name", "function", "input", "window", "hop", "dtype", "default"],
      v.aggregations.map((a) => [a.name, a.function, a.input || "*", a.window, a.hop, a.dtype,
                                 fmtNum(a.default)])))] : null,
    h("h2", {}, "Lineage"), lineageSvg(graph),
    h("h2", {}, "Statistics (latest snapshot per feature)"), statsSection(v.statistics),
    h("h2", {}, "Versions"), versions(v.versions));
}

async function servicePage(name) {
  const s = await api(`/api/services/${encodeURIComponent(name)}`);
  const graph = await api(`/api/lineage/${encodeURIComponent("service:" + s.name)}`);
  const logging = s.logging ? `on, sample rate ${s.logging.sample_rate}` : "off";
  render(
    h("div", {}, kindBadge("service"), h("h1", {id: "title"}, s.name)),
    h("p", {}, s.description || "(no description)"),
    h("div", {class: "card"}, facts([["owner", s.owner || "-"], ["tags", tags(s.tags)],
      ["views", s.views.map((v) => link("view", v)).flatMap((a, i) => i ? [", ", a] : [a])],
      ["logging", h("span", {id: "logging"}, logging)], ["version", String(s.version)]])),
    h("h2", {}, `Features (${s.features.length})`),
    h("div", {id: "service-features"}, table(["view", "feature", "dtype", "scaler"],
      s.features.map((f) => [link("view", f.view), f.feature, f.dtype || "-", f.scaler || "-"]))),
    h("h2", {}, "Lineage"), lineageSvg(graph),
    h("h2", {}, "Versions"), versions(s.versions));
}

async function lineagePage(id) {
  const graph = await api(`/api/lineage/${encodeURIComponent(id)}`);
  const [kind, name] = graph.focus.split(/:(.*)/s);
  render(h("div", {}, kindBadge(kind), h("h1", {id: "title"}, name)),
                       h("h2", {}, "Lineage"), lineageSvg(graph));
}

async function route() {
  const [, page, arg] = location.hash.match(/^#\/([a-z]*)\/?(.*)$/) || [];
  const name = decodeURIComponent(arg || "");
  clearTimeout(timer);  // navigation wins over a pending or in-flight search
  searchSeq++;
  try {
    if (page === "view" && name) await viewPage(name);
    else if (page === "service" && name) await servicePage(name);
    else if (page === "lineage" && name) await lineagePage(name);
    else await runSearch();
  } catch (err) { showError(err); }
}

document.getElementById("search-form").addEventListener("submit", (e) => { e.preventDefault(); onType(); });
document.getElementById("search-form").addEventListener("input", onType);
window.addEventListener("hashchange", route);
api("/api/project").then((p) => {
  document.getElementById("project").textContent = `project ${p.project}`;
}).catch(() => {});
route();
