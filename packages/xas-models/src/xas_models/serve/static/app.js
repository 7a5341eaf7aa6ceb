// xas serve page: plain JavaScript on the server's REST API (see /docs) and the bundled Plotly.
"use strict";

const $ = (id) => document.getElementById(id);
const session = { predictions: [], lastForm: null, lastResult: null };
// an optional bearer token, given as http://host:port/#token=SECRET (never sent in the URL)
const token = new URLSearchParams(location.hash.slice(1)).get("token");

async function api(path, options = {}) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const resp = await fetch(path, { ...options, headers });
  if (!resp.ok) {
    let detail = `${resp.status} ${resp.statusText}`;
    try { detail = (await resp.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return resp;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function fmt(x, digits = 2) { return x === null || x === undefined ? "-" : Number(x).toFixed(digits); }

function setBusy(id, text) { $(id).textContent = text; }

// ---------------------------------------------------------------- tabs
document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => {
  document.querySelectorAll("nav button").forEach((x) => x.classList.toggle("active", x === b));
  document.querySelectorAll("section").forEach((s) =>
    s.classList.toggle("active", s.id === `tab-${b.dataset.tab}`));
}));

// ---------------------------------------------------------------- models
async function loadModels() {
  try {
    const answer = await (await api("models")).json();
    const fwd = $("forward-models"), inv = $("inverse-model"), body = $("models-table").tBodies[0];
    body.replaceChildren();
    const seen = new Set();
    for (const m of answer.models) {
      const row = body.insertRow();
      [m.name, m.version, m.task, m.elements.join(", "), m.fidelity, m.featurizer,
        m.headline_metric + (m.below_baseline.length ? ` (below baseline: ${m.below_baseline.join(", ")})` : ""),
        m.license].forEach((t) => cell(row, t));
      const link = document.createElement("button");
      link.textContent = "card";
      link.addEventListener("click", () => showCard(m.name, m.version, "models-card"));
      cell(row, "").appendChild(link);
      if (seen.has(m.name)) continue;  // the selects offer the latest version of each name
      seen.add(m.name);
      const opt = new Option(`${m.name} (${m.elements.join(",")})`, m.name);
      if (m.task === "forward") { opt.selected = m.name === answer.default_forward; fwd.add(opt); }
      if (m.task === "inverse") { opt.selected = m.name === answer.default_inverse; inv.add(opt); }
    }
    document.body.dataset.modelsLoaded = "true";
  } catch (err) {
    $("models-error").textContent = err.message;
  }
}

async function showCard(name, version, target) {
  try {
    const m = await (await api(`models/${encodeURIComponent(name)}?version=${encodeURIComponent(version)}`)).json();
    $(target).textContent = m.card || `${name} ${version}: no model card`;
  } catch (err) {
    $(target).textContent = err.message;
  }
}

// ---------------------------------------------------------------- structure -> spectra
function structureForm() {
  const form = new FormData();
  const file = $("structure-file").files[0];
  if (file) form.append("file", file);
  else form.append("text", $("structure-text").value);
  for (const opt of $("forward-models").selectedOptions) form.append("model", opt.value);
  return form;
}

function spectrumTraces(p) {
  const e = p.energy_eV, traces = [];
  if (p.average_sigma) {
    const hi = p.average_mu.map((m, k) => m + p.average_sigma[k]);
    const lo = p.average_mu.map((m, k) => m - p.average_sigma[k]);
    traces.push({ x: e.concat([...e].reverse()), y: hi.concat(lo.reverse()), fill: "toself",
      fillcolor: "rgba(31,119,180,0.2)", line: { width: 0 }, name: "average ±1σ", hoverinfo: "skip" });
  }
  if (p.sites.length > 1) {
    for (const s of p.sites) {
      traces.push({ x: e, y: s.mu, mode: "lines", line: { width: 1 },
        name: `site ${s.site_index} (×${s.multiplicity})` });
    }
  }
  traces.push({ x: e, y: p.average_mu, mode: "lines", line: { width: 3, color: "#1f77b4" },
    name: p.sites.length > 1 ? "average" : `site ${p.sites[0].site_index} (×${p.sites[0].multiplicity})` });
  return traces;
}

async function plotPrediction(p, index) {
  const div = document.createElement("div");
  div.className = "xas-plot";
  div.id = `plot-${index}`;
  $("plots").appendChild(div);
  await Plotly.newPlot(div, spectrumTraces(p), {
    title: { text: `${p.source} (${p.formula}): ${p.element} ${p.edge}-edge, ${p.model} ${p.model_version}` },
    xaxis: { title: { text: "energy (eV)" } }, yaxis: { title: { text: "μ(E) (normalised)" } },
    margin: { t: 50 },
  }, { responsive: true });
  div.dataset.rendered = "true";
}

function fillEdgeTable(predictions) {
  const body = $("edge-table").tBodies[0];
  body.replaceChildren();
  for (const p of predictions) {
    const rows = p.sites.map((s) => [String(s.site_index), s.multiplicity, s]);
    rows.push(["average", p.sites.reduce((n, s) => n + s.multiplicity, 0), p.average]);
    for (const [site, mult, f] of rows) {
      const row = body.insertRow();
      [p.source, p.element, `${p.model} ${p.model_version}`, site, mult, fmt(f.e0_ev),
        fmt(f.white_line_ev), fmt(f.white_line_mu, 3)].forEach((t) => cell(row, t));
    }
  }
}

async function predict() {
  $("predict-error").textContent = "";
  $("predict-notes").textContent = "";
  document.body.dataset.predictState = "running";
  setBusy("predict-status", "predicting...");
  const form = structureForm();
  try {
    const result = await (await api("predict", { method: "POST", body: form })).json();
    session.lastForm = form;
    session.lastResult = result;
    session.predictions.push(...result.predictions);
    $("plots").replaceChildren();
    for (const [i, p] of result.predictions.entries()) await plotPrediction(p, i);
    fillEdgeTable(result.predictions);
    $("predict-notes").textContent = result.notes.join("; ");
    const first = result.predictions[0];
    await showCard(first.model, first.model_version, "model-card");
    $("download-csv").disabled = false;
    $("download-json").disabled = false;
    setBusy("predict-status", `${result.formula}: ${result.predictions.length} spectra`);
    document.body.dataset.predictState = "done";
  } catch (err) {
    $("predict-error").textContent = err.message;
    setBusy("predict-status", "");
    document.body.dataset.predictState = "error";
  }
}

function saveBlob(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

async function downloadCsv() {
  try {
    const resp = await api("predict?output=csv", { method: "POST", body: session.lastForm });
    saveBlob(await resp.blob(), `${session.lastResult.formula}-xas.csv`);
  } catch (err) {
    $("predict-error").textContent = err.message;
  }
}

function downloadJson() {
  const text = JSON.stringify(session.lastResult, null, 1);
  saveBlob(new Blob([text], { type: "application/json" }), `${session.lastResult.formula}-xas.json`);
}

// ---------------------------------------------------------------- measured -> descriptors
function pearson(a, b) {
  const n = a.length, ma = a.reduce((s, x) => s + x, 0) / n, mb = b.reduce((s, x) => s + x, 0) / n;
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb); saa += (a[i] - ma) ** 2; sbb += (b[i] - mb) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}

function interp(x, xp, fp) {  // linear interpolation, NaN outside xp
  return x.map((v) => {
    if (v < xp[0] || v > xp[xp.length - 1]) return NaN;
    let j = 1;
    while (xp[j] < v) j++;
    const t = (v - xp[j - 1]) / (xp[j] - xp[j - 1] || 1);
    return fp[j - 1] + t * (fp[j] - fp[j - 1]);
  });
}

function rankedOverlays(s) {
  const ranked = [];
  for (const p of session.predictions.filter((q) => q.element === s.element)) {
    const y = interp(s.energy_eV, p.energy_eV, p.average_mu);
    const keep = y.map((v, i) => [v, s.mu_norm[i]]).filter(([v]) => Number.isFinite(v));
    if (keep.length < 10) continue;
    const r = pearson(keep.map((k) => k[0]), keep.map((k) => k[1]));
    ranked.push({ p, r });
  }
  return ranked.sort((a, b) => b.r - a.r);
}

function descriptorTable(s) {
  const table = document.createElement("table");
  table.className = "descriptor-table";
  table.createTHead().insertRow().append(...["descriptor", "value", "probabilities / spread", "notes"]
    .map((t) => { const th = document.createElement("th"); th.textContent = t; return th; }));
  const body = table.createTBody();
  for (const [name, d] of Object.entries(s.descriptors)) {
    const row = body.insertRow();
    row.dataset.descriptor = name;
    cell(row, name);
    cell(row, d.kind === "classification" ? String(d.value) : fmt(d.value, 3));
    const probs = Object.entries(d.probabilities).sort((a, b) => b[1] - a[1]).slice(0, 4);
    cell(row, d.kind === "classification" ? probs.map(([c, q]) => `${c}: ${q.toFixed(2)}`).join(", ")
      : `± ${fmt(d.std, 3)}`);
    const notes = cell(row, (d.in_domain === false ? "outside training domain. " : "") + d.warnings.join("; "));
    notes.className = "warn";
  }
  return table;
}

async function describeOne(s, index) {
  const box = document.createElement("div");
  box.className = "described";
  const h = document.createElement("h3");
  h.textContent = `${s.name}: ${s.element} K edge, E0 ${fmt(s.e0_ev, 1)} eV, model ${s.model} ${s.model_version}`;
  box.append(h, descriptorTable(s));
  const ranked = rankedOverlays(s);
  if (ranked.length) {
    const list = document.createElement("table");
    list.className = "similarity-table";
    list.createTHead().insertRow().append(...["predicted spectrum", "Pearson r"]
      .map((t) => { const th = document.createElement("th"); th.textContent = t; return th; }));
    for (const { p, r } of ranked) {
      const row = list.createTBody().insertRow();
      cell(row, `${p.source} (${p.formula}) ${p.model}`);
      cell(row, r.toFixed(3));
    }
    box.appendChild(list);
  }
  if (s.notes.length) {
    const n = document.createElement("p");
    n.className = "note";
    n.textContent = s.notes.join("; ");
    box.appendChild(n);
  }
  const div = document.createElement("div");
  div.className = "xas-plot";
  div.id = `measured-plot-${index}`;
  box.appendChild(div);
  $("describe-results").appendChild(box);
  const traces = [{ x: s.energy_eV, y: s.mu_norm, mode: "lines", name: "measured (normalised)",
    line: { width: 3, color: "black" } }];
  for (const { p, r } of ranked.slice(0, 5)) {
    traces.push({ x: p.energy_eV, y: p.average_mu, mode: "lines", name: `${p.formula} (r=${r.toFixed(2)})` });
  }
  await Plotly.newPlot(div, traces, { xaxis: { title: { text: "energy (eV)" } },
    yaxis: { title: { text: "normalised μ(E)" } }, margin: { t: 20 } }, { responsive: true });
  div.dataset.rendered = "true";
}

async function describe() {
  $("describe-error").textContent = "";
  document.body.dataset.describeState = "running";
  setBusy("describe-status", "describing...");
  const form = new FormData();
  const file = $("spectrum-file").files[0];
  if (file) form.append("file", file);
  else form.append("text", $("spectrum-text").value);
  if ($("spectrum-element").value.trim()) form.append("element", $("spectrum-element").value.trim());
  if ($("inverse-model").value) form.append("model", $("inverse-model").value);
  try {
    const result = await (await api("describe", { method: "POST", body: form })).json();
    $("describe-results").replaceChildren();
    for (const [i, s] of result.spectra.entries()) await describeOne(s, i);
    setBusy("describe-status", `${result.spectra.length} spectra described`);
    document.body.dataset.describeState = "done";
  } catch (err) {
    $("describe-error").textContent = err.message;
    setBusy("describe-status", "");
    document.body.dataset.describeState = "error";
  }
}

$("predict-btn").addEventListener("click", predict);
$("download-csv").addEventListener("click", downloadCsv);
$("download-json").addEventListener("click", downloadJson);
$("describe-btn").addEventListener("click", describe);
loadModels();
