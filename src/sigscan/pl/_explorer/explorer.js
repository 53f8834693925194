// sigscan concept explorer: hand-written, dependency-free. Reads the JSON payload in #sigscan-data, decompresses the
// per-cell arrays (gzip, DecompressionStream), and draws every cell into one canvas from a precomputed colour buffer.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const D = JSON.parse($("sigscan-data").textContent);
  const K = D.n_concepts;
  const state = { concept: -1, colourBy: "concept", gene: -1, ready: false, draws: 0, error: null };

  // ---------------------------------------------------------------------------------------------------- helpers
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [name, value] of Object.entries(props)) {
        if (value == null) continue;
        if (name === "class") node.className = value;
        else if (name === "text") node.textContent = value;
        else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
        else if (name === "style") node.style.cssText = value;
        else node.setAttribute(name, value);
      }
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }
  const fmt = (v) => (v == null ? "–" : Math.abs(v) >= 1000 || (Math.abs(v) < 0.001 && v !== 0) ? v.toExponential(1)
    : String(+v.toPrecision(3)));
  const pct = (n, d) => (d ? (100 * n / d).toFixed(n / d < 0.1 ? 1 : 0) + "%" : "–");
  const notComputed = (what, how) => el("div", { class: "nc", text: what + " not computed" + (how ? " (" + how + ")" : "") });
  const rgba = (r, g, b) => ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0; // little-endian ImageData word
  function hexWord(hex) {
    const v = parseInt(hex.slice(1, 7), 16);
    return rgba((v >> 16) & 255, (v >> 8) & 255, v & 255);
  }
  const LUT = new Uint32Array(256);
  LUT[0] = hexWord(D.inactive);
  for (let q = 1; q < 256; q++) LUT[q] = rgba(D.cmap[3 * (q - 1)], D.cmap[3 * (q - 1) + 1], D.cmap[3 * (q - 1) + 2]);
  const BACKGROUND = rgba(255, 255, 255);
  const NA_GROUP = 65535;

  async function decode() {
    if (typeof DecompressionStream === "undefined") {
      throw new Error("This browser cannot decompress the embedded data (no DecompressionStream); open the file " +
        "in a current Chrome, Edge, Firefox or Safari.");
    }
    const text = atob(D.blob);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    const buffer = await new Response(stream).arrayBuffer();
    const TYPES = { uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, float32: Float32Array };
    const out = {};
    for (const [name, [offset, type, count]] of Object.entries(D.layout)) out[name] = new TYPES[type](buffer, offset, count);
    return out;
  }

  // ---------------------------------------------------------------------------------------------------- data
  let N = 0, X = null, Y = null, ptr = null, cells = null, vals = null, groupCodes = null;
  const genesOf = D.top_genes; // per concept {genes, scores, frac} or null
  const conceptsOfGene = new Map(); // gene index -> [{concept, rank, score}]
  if (genesOf) {
    genesOf.forEach((block, c) => block.genes.forEach((g, rank) => {
      if (!conceptsOfGene.has(g)) conceptsOfGene.set(g, []);
      conceptsOfGene.get(g).push({ concept: c, rank: rank + 1, score: block.scores[rank] });
    }));
    for (const list of conceptsOfGene.values()) list.sort((a, b) => a.rank - b.rank || b.score - a.score);
  }
  const setsOfGene = new Map();
  if (D.gene_sets) {
    D.gene_sets.members.forEach((members, s) => members.forEach((g) => {
      if (!setsOfGene.has(g)) setsOfGene.set(g, []);
      setsOfGene.get(g).push(s);
    }));
  }
  const geneIndex = new Map(D.genes.map((g, i) => [g, i]));
  function bestGroups(c, n) {
    if (!D.groups) return null;
    const means = D.groups.means[c];
    return means.map((m, g) => [g, m]).filter(([g]) => D.groups.counts[g] > 0).sort((a, b) => b[1] - a[1]).slice(0, n);
  }
  function specificity(c) { // best group's mean over the mean across groups
    const best = bestGroups(c, 1);
    if (!best || !best.length || !D.stats.mean[c]) return 0;
    return best[0][1] / D.stats.mean[c];
  }

  // ---------------------------------------------------------------------------------------------------- scatter
  const canvas = $("scatter");
  const ctx = canvas.getContext("2d", { alpha: false });
  let W = 1, H = 1, dpr = 1, image = null, pixels = null, pick = null;
  const view = { scale: 1, tx: 0, ty: 0 };
  let colours = null, order = null, activation = null, groupOrder = null;
  let pointSize = 0, offsets = null;

  function defaultPointSize() { return N > 50000 ? 2 : N > 10000 ? 3 : N > 2000 ? 4 : 5; }
  function setPointSize(size) {
    pointSize = size;
    const r = (size * dpr) / 2, list = [];
    const span = Math.max(1, Math.round(size * dpr));
    for (let dy = 0; dy < span; dy++) {
      for (let dx = 0; dx < span; dx++) {
        const ex = dx + 0.5 - span / 2, ey = dy + 0.5 - span / 2;
        if (span < 3 || ex * ex + ey * ey <= r * r + 0.25) list.push([dx - Math.floor(span / 2), dy - Math.floor(span / 2)]);
      }
    }
    offsets = list;
  }
  function resize() {
    const box = canvas.parentElement.getBoundingClientRect();
    dpr = window.devicePixelRatio || 1;
    W = Math.max(1, Math.round(box.width * dpr));
    H = Math.max(1, Math.round(box.height * dpr));
    canvas.width = W; canvas.height = H;
    image = ctx.createImageData(W, H);
    pixels = new Uint32Array(image.data.buffer);
    pick = new Int32Array(W * H);
    setPointSize(pointSize || defaultPointSize());
    schedule();
  }
  function transform() {
    const [x0, x1, y0, y1] = D.range, pad = 14 * dpr;
    const k = Math.min((W - 2 * pad) / Math.max(x1 - x0, 1e-12), (H - 2 * pad) / Math.max(y1 - y0, 1e-12)) * view.scale;
    return { k, cx: (x0 + x1) / 2, cy: (y0 + y1) / 2 };
  }
  function draw() {
    if (!order) return;
    const { k, cx, cy } = transform();
    const ox = W / 2 + view.tx - cx * k, oy = H / 2 + view.ty + cy * k;
    pixels.fill(BACKGROUND);
    pick.fill(-1);
    const n = order.length, m = offsets.length;
    for (let j = 0; j < n; j++) {
      const i = order[j];
      const px = Math.round(ox + X[i] * k), py = Math.round(oy - Y[i] * k);
      if (px < -8 || py < -8 || px > W + 8 || py > H + 8) continue;
      const colour = colours[i];
      for (let o = 0; o < m; o++) {
        const x = px + offsets[o][0], y = py + offsets[o][1];
        if (x < 0 || y < 0 || x >= W || y >= H) continue;
        const at = y * W + x;
        pixels[at] = colour;
        pick[at] = i;
      }
    }
    ctx.putImageData(image, 0, 0);
    state.draws += 1;
  }
  let pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); });
  }

  // colour buffers: one Uint32 per cell plus a draw order (inactive first, then by activation, highest on top)
  function colourByConcept(c) {
    activation.fill(0);
    colours.fill(LUT[0]);
    const lo = ptr[c], hi = ptr[c + 1];
    const counts = new Uint32Array(257);
    for (let j = lo; j < hi; j++) counts[vals[j] + 1]++;
    counts[1] = N - (hi - lo);
    for (let q = 1; q < 257; q++) counts[q] += counts[q - 1];
    const active = new Uint8Array(N);
    for (let j = lo; j < hi; j++) {
      const i = cells[j];
      active[i] = 1;
      colours[i] = LUT[vals[j]];
      activation[i] = (vals[j] / 255) * D.stats.scale[c];
    }
    let z = 0;
    for (let i = 0; i < N; i++) if (!active[i]) order[z++] = i;
    for (let j = lo; j < hi; j++) order[counts[vals[j]]++] = cells[j];
  }
  function colourByGroup() {
    for (let i = 0; i < N; i++) {
      const g = groupCodes[i];
      colours[i] = g === NA_GROUP ? LUT[0] : groupColours[g];
    }
    order.set(groupOrder);
  }
  let groupColours = null;
  function recolour() {
    if (state.colourBy === "group" && groupCodes) colourByGroup();
    else if (state.concept >= 0) colourByConcept(state.concept);
    drawLegend();
    updatePlotTitle();
    schedule();
  }

  // zoom, pan, hover
  let drag = null;
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const box = canvas.getBoundingClientRect();
    const mx = (event.clientX - box.left) * dpr, my = (event.clientY - box.top) * dpr;
    const factor = Math.exp(-event.deltaY * 0.0015);
    const next = Math.min(200, Math.max(0.2, view.scale * factor)), f = next / view.scale;
    view.tx = mx - W / 2 - (mx - W / 2 - view.tx) * f;
    view.ty = my - H / 2 - (my - H / 2 - view.ty) * f;
    view.scale = next;
    schedule();
  }, { passive: false });
  canvas.addEventListener("pointerdown", (event) => { drag = { x: event.clientX, y: event.clientY }; canvas.setPointerCapture(event.pointerId); });
  canvas.addEventListener("pointerup", () => { drag = null; });
  canvas.addEventListener("pointermove", (event) => {
    if (drag) {
      view.tx += (event.clientX - drag.x) * dpr; view.ty += (event.clientY - drag.y) * dpr;
      drag = { x: event.clientX, y: event.clientY };
      $("tooltip").hidden = true;
      schedule();
      return;
    }
    hover(event);
  });
  canvas.addEventListener("pointerleave", () => { $("tooltip").hidden = true; });
  canvas.addEventListener("dblclick", resetView);
  function resetView() { view.scale = 1; view.tx = 0; view.ty = 0; schedule(); }
  function hover(event) {
    const box = canvas.getBoundingClientRect();
    const x = Math.round((event.clientX - box.left) * dpr), y = Math.round((event.clientY - box.top) * dpr);
    const tip = $("tooltip");
    const i = x >= 0 && y >= 0 && x < W && y < H ? pick[y * W + x] : -1;
    if (i < 0) { tip.hidden = true; return; }
    const parts = ["cell " + i];
    if (groupCodes && groupCodes[i] !== NA_GROUP) parts.push(D.groups.names[groupCodes[i]]);
    if (state.concept >= 0 && state.colourBy === "concept") {
      const a = activation[i], c = state.concept;
      parts.push(D.labels[c] + " = " + (a >= D.stats.scale[c] && D.stats.scale[c] < D.stats.max[c] ? "≥ " : "") + fmt(a));
    }
    tip.textContent = parts.join(" · ");
    tip.hidden = false;
    tip.style.left = Math.min(event.clientX - box.left + 12, box.width - tip.offsetWidth - 4) + "px";
    tip.style.top = Math.max(0, event.clientY - box.top - 28) + "px";
  }

  function drawLegend() {
    const legend = $("legend");
    legend.replaceChildren();
    if (state.colourBy === "group" && D.groups) {
      D.groups.names.forEach((name, g) => legend.append(el("span", null,
        el("span", { class: "swatch", style: "background:" + D.groups.colors[g] }), name)));
      return;
    }
    if (state.concept < 0) return;
    const bar = el("canvas", { width: 160, height: 10 });
    const c2 = bar.getContext("2d"), img = c2.createImageData(160, 10), px = new Uint32Array(img.data.buffer);
    for (let x = 0; x < 160; x++) for (let y = 0; y < 10; y++) px[y * 160 + x] = LUT[1 + Math.floor((x / 160) * 255)];
    c2.putImageData(img, 0, 0);
    legend.append(el("span", null, D.labels[state.concept] + " activation  0", bar,
      fmt(D.stats.scale[state.concept]) + (D.stats.scale[state.concept] < D.stats.max[state.concept] ? "+" : "")),
      el("span", null, el("span", { class: "swatch", style: "background:" + D.inactive }), "inactive"));
  }
  function updatePlotTitle() {
    const what = state.colourBy === "group" && D.groups ? D.groups.key : state.concept >= 0 ? D.labels[state.concept] : "";
    $("plot-title").textContent = D.basis + (what ? " · " + what : "") +
      (D.n_cells < D.n_obs ? " · " + D.n_cells.toLocaleString() + " of " + D.n_obs.toLocaleString() + " cells" : "");
  }

  // ---------------------------------------------------------------------------------------------------- panels
  const rows = [];
  function conceptRow(c) {
    const block = genesOf ? genesOf[c] : null;
    const genesLine = !genesOf ? el("div", { class: "genes-line nc", text: "top genes not computed" })
      : el("div", { class: "genes-line", text: block.genes.length ? block.genes.slice(0, 6).map((g) => D.genes[g]).join(", ")
        : "no gene scores" });
    const meta = [];
    const best = bestGroups(c, 2);
    if (best && best.length && D.stats.n_active[c]) meta.push("▲ " + best.map(([g]) => D.groups.names[g]).join(", "));
    if (D.enrichment && D.enrichment[c].length) meta.push("⊕ " + D.enrichment[c][0].set);
    const li = el("li", { "data-concept": c, class: D.stats.n_active[c] ? null : "dead", onclick: () => selectConcept(c) },
      el("div", { class: "row1" }, el("b", { text: D.labels[c] }),
        el("small", { text: pct(D.stats.n_active[c], D.n_obs) + " cells · mean " + fmt(D.stats.mean[c]) })),
      genesLine, meta.length ? el("div", { class: "meta-line", text: meta.join("   ") }) : null);
    return li;
  }
  function buildList() {
    const list = $("concept-list");
    for (let c = 0; c < K; c++) rows.push(conceptRow(c));
    sortList();
    list.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
      event.preventDefault();
      const items = [...list.children], at = items.findIndex((li) => +li.dataset.concept === state.concept);
      const next = items[Math.min(items.length - 1, Math.max(0, at + (event.key === "ArrowDown" ? 1 : -1)))];
      if (next) selectConcept(+next.dataset.concept);
    });
    list.tabIndex = 0;
  }
  function sortList() {
    const how = $("sort").value, index = [...Array(K).keys()];
    const key = { index: (c) => c, active: (c) => -D.stats.n_active[c], mean: (c) => -D.stats.mean[c], specific: (c) => -specificity(c) }[how];
    index.sort((a, b) => key(a) - key(b) || a - b);
    $("concept-list").replaceChildren(...index.map((c) => rows[c]));
  }

  function geneChip(g, extra) {
    return el("button", { type: "button", class: "chip" + (g === state.gene ? " current" : ""), title: extra || null,
      "data-gene": D.genes[g], onclick: () => showGene(g) }, D.genes[g]);
  }
  function renderConcept(c) {
    const pane = $("concept-detail");
    const n = D.stats.n_active[c];
    const parts = [el("h2", { text: "Concept " + D.labels[c] }),
      el("div", { class: "stats", text: n.toLocaleString() + " active cells (" + pct(n, D.n_obs) + ") · mean " +
        fmt(D.stats.mean[c]) + " · max " + fmt(D.stats.max[c]) })];
    parts.push(el("h3", { text: "Top genes" }));
    if (!genesOf) parts.push(notComputed("gene scores", "run ss.tl.concept_genes"));
    else if (!genesOf[c].genes.length) parts.push(el("div", { class: "nc", text: "no gene scores for this concept" }));
    else {
      const block = genesOf[c], top = Math.max(...block.scores.slice(0, 1).map(Math.abs), 1e-12);
      const table = el("table", null, el("tr", null, el("th", { text: "gene" }), el("th", { text: "score" }), el("th"),
        block.frac ? el("th", { text: "cells" }) : null));
      block.genes.slice(0, 15).forEach((g, r) => table.append(el("tr", null, el("td", null, geneChip(g)),
        el("td", { class: "num", text: fmt(block.scores[r]) }),
        el("td", { class: "barcell" }, el("div", { class: "bar", style: "width:" + Math.max(0, 100 * block.scores[r] / top) + "%" })),
        block.frac ? el("td", { class: "num", text: block.frac[r] == null ? "–" : pct(block.frac[r], 1) }) : null)));
      parts.push(table);
      if (block.genes.length > 15) {
        parts.push(el("div", { class: "chips", style: "margin-top:.4em" }, ...block.genes.slice(15).map((g) => geneChip(g))));
      }
    }
    parts.push(el("h3", { text: "Best groups" + (D.groups ? " (" + D.groups.key + ", mean activation)" : "") }));
    if (!D.groups) parts.push(notComputed("groups", "pass groupby="));
    else {
      const best = bestGroups(c, 10), top = best.length ? Math.max(best[0][1], 1e-12) : 1;
      const table = el("table");
      for (const [g, m] of best) {
        table.append(el("tr", null, el("td", null, el("span", { class: "swatch", style: "background:" + D.groups.colors[g] }),
          D.groups.names[g]), el("td", { class: "num", text: fmt(m) }),
        el("td", { class: "barcell" }, el("div", { class: "bar", style: "width:" + Math.max(0, 100 * m / top) + "%" }))));
      }
      parts.push(table);
    }
    parts.push(el("h3", { text: "Enrichment" }));
    if (!D.enrichment) parts.push(notComputed("enrichment", "run ss.tl.concept_enrichment"));
    else if (!D.enrichment[c].length) parts.push(el("div", { class: "nc", text: "no enrichment rows for this concept" }));
    else {
      const table = el("table", null, el("tr", null, el("th", { text: "gene set" }), el("th", { text: "overlap" }),
        el("th", { text: "FDR" })));
      for (const hit of D.enrichment[c]) {
        const overlap = hit.overlap != null ? hit.overlap + (hit.set_size != null ? "/" + hit.set_size : "") : "–";
        const genes = (hit.genes || []).map((name) => geneIndex.has(name) ? geneChip(geneIndex.get(name)) : el("span", { text: name + " " }));
        table.append(el("tr", null, el("td", null, el("div", { text: hit.set }), genes.length ? el("div", { class: "chips" }, ...genes) : null),
          el("td", { class: "num", text: overlap }), el("td", { class: "num", text: fmt(hit.fdr != null ? hit.fdr : hit.p) })));
      }
      parts.push(table);
    }
    pane.replaceChildren(...parts);
  }

  function selectConcept(c) {
    if (c < 0 || c >= K) return;
    state.concept = c;
    if (state.colourBy === "group") { state.colourBy = "concept"; $("colour-by").value = "concept"; }
    for (const li of $("concept-list").children) li.classList.toggle("selected", +li.dataset.concept === c);
    const row = rows[c];
    if (row.scrollIntoView) row.scrollIntoView({ block: "nearest" });
    renderConcept(c);
    for (const tr of document.querySelectorAll("#gene-detail tr[data-concept]")) tr.classList.toggle("current", +tr.dataset.concept === c);
    recolour();
  }

  function showGene(g) {
    state.gene = g;
    const pane = $("gene-detail");
    const drives = conceptsOfGene.get(g) || [];
    const parts = [el("button", { type: "button", class: "close", title: "close", onclick: () => { pane.hidden = true; state.gene = -1; } }, "×"),
      el("h2", { text: "Gene " + D.genes[g] })];
    if (!drives.length) parts.push(el("div", { class: "nc", text: "not among any concept's top genes" }));
    else {
      parts.push(el("div", { class: "stats", text: "drives " + drives.length + " concept" + (drives.length > 1 ? "s" : "") +
        " (rank among the concept's top genes, score):" }));
      const table = el("table", { class: "gene-concepts" });
      for (const { concept, rank, score } of drives) {
        table.append(el("tr", { "data-concept": concept, class: concept === state.concept ? "current" : null }, el("td", null, el("span", { class: "link", text: D.labels[concept],
          onclick: () => selectConcept(concept) })), el("td", { class: "num", text: "rank " + rank }),
        el("td", { class: "num", text: fmt(score) })));
      }
      parts.push(table);
    }
    const sets = setsOfGene.get(g);
    if (sets && sets.length) {
      parts.push(el("h3", { text: "In gene sets" }), el("div", { class: "chips" },
        ...sets.map((s) => el("button", { type: "button", class: "chip", onclick: () => showGeneSet(s) }, D.gene_sets.names[s]))));
    }
    pane.replaceChildren(...parts);
    pane.hidden = false;
    $("detail-pane").scrollTop = 0;
    if (drives.length && !drives.some((d) => d.concept === state.concept)) selectConcept(drives[0].concept);
    else if (state.concept >= 0) renderConcept(state.concept);
  }
  function showGeneSet(s) {
    const pane = $("gene-detail"), members = D.gene_sets.members[s];
    pane.replaceChildren(el("button", { type: "button", class: "close", onclick: () => { pane.hidden = true; } }, "×"),
      el("h2", { text: D.gene_sets.names[s] }),
      el("div", { class: "stats", text: members.length + " of its " + D.gene_sets.sizes[s] + " genes are among the concepts' top genes" }),
      el("div", { class: "chips" }, ...members.map((g) => geneChip(g))));
    pane.hidden = false;
  }

  // ---------------------------------------------------------------------------------------------------- search
  let hits = [], active = -1;
  function search(text) {
    const q = text.trim().toLowerCase(), box = $("results");
    if (!q) { box.hidden = true; hits = []; return; }
    const concepts = [], genes = [], sets = [];
    for (let c = 0; c < K && concepts.length < 8; c++) {
      const label = D.labels[c].toLowerCase();
      if (label.includes(q) || String(c) === q) concepts.push(c);
    }
    const starts = [], contains = [];
    D.genes.forEach((name, g) => { const n = name.toLowerCase(); if (n.startsWith(q)) starts.push(g); else if (n.includes(q)) contains.push(g); });
    genes.push(...starts.sort((a, b) => D.genes[a].length - D.genes[b].length).concat(contains).slice(0, 12));
    if (D.gene_sets) D.gene_sets.names.forEach((name, s) => { if (sets.length < 8 && name.toLowerCase().includes(q)) sets.push(s); });
    hits = [];
    const parts = [];
    const section = (title, items, make) => {
      if (!items.length) return;
      parts.push(el("h3", { text: title }));
      for (const item of items) { const [node, action] = make(item); node.classList.add("hit"); node.addEventListener("click", () => { close(); action(); }); hits.push([node, action]); parts.push(node); }
    };
    section("Genes", genes, (g) => [el("div", { "data-gene": D.genes[g] }, el("span", { text: D.genes[g] }),
      el("small", { text: (conceptsOfGene.get(g) || []).slice(0, 4).map((d) => D.labels[d.concept]).join(", ") })), () => showGene(g)]);
    section("Concepts", concepts, (c) => [el("div", { "data-concept": c }, el("span", { text: D.labels[c] }),
      el("small", { text: genesOf ? genesOf[c].genes.slice(0, 4).map((g) => D.genes[g]).join(", ") : "" })), () => selectConcept(c)]);
    section("Gene sets", sets, (s) => [el("div", { "data-set": D.gene_sets.names[s] }, el("span", { text: D.gene_sets.names[s] }),
      el("small", { text: D.gene_sets.members[s].length + " genes in concepts" })), () => showGeneSet(s)]);
    if (!parts.length) {
      parts.push(el("div", { class: "none", text: "no match" + (genesOf ? " (genes: only those among the concepts' top genes)" : " (gene scores not computed)") }));
    }
    active = hits.length ? 0 : -1;
    if (active === 0) hits[0][0].classList.add("active");
    box.replaceChildren(...parts);
    box.hidden = false;
  }
  function close() { $("results").hidden = true; }
  function setupSearch() {
    const input = $("search");
    let timer = 0;
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => search(input.value), 60); });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") { close(); return; }
      if (event.key === "Enter") { clearTimeout(timer); search(input.value); if (hits[active]) { close(); hits[active][1](); } return; }
      if ((event.key === "ArrowDown" || event.key === "ArrowUp") && hits.length) {
        event.preventDefault();
        hits[active][0].classList.remove("active");
        active = (active + (event.key === "ArrowDown" ? 1 : hits.length - 1)) % hits.length;
        hits[active][0].classList.add("active");
        hits[active][0].scrollIntoView({ block: "nearest" });
      }
    });
    input.addEventListener("focus", () => { if (input.value.trim()) search(input.value); });
    document.addEventListener("click", (event) => { if (!$("search-box").contains(event.target)) close(); });
  }

  // ---------------------------------------------------------------------------------------------------- start
  function summary() {
    const show = (value) => (typeof value === "number" ? value.toLocaleString() : String(value));
    const box = $("summary");
    box.replaceChildren(...D.summary.filter((row) => row[2]).map(([name, value]) => el("span", null,
      name.replace(/_/g, " ") + " ", el("b", { text: show(value) }))));
    box.title = D.summary.map(([name, value]) => name.replace(/_/g, " ") + ": " + show(value)).join("\n");
  }
  async function start() {
    summary();
    const data = await decode();
    N = D.n_cells;
    const q = data.coords, [x0, x1, y0, y1] = D.range;
    X = new Float32Array(N); Y = new Float32Array(N);
    for (let i = 0; i < N; i++) { X[i] = x0 + (q[2 * i] / 65535) * (x1 - x0); Y[i] = y0 + (q[2 * i + 1] / 65535) * (y1 - y0); }
    ptr = data.act_indptr; vals = data.act_values;
    cells = new Uint32Array(data.act_cells.length);
    for (let c = 0; c < K; c++) { let at = 0; for (let j = ptr[c]; j < ptr[c + 1]; j++) { at += data.act_cells[j]; cells[j] = at; } }
    colours = new Uint32Array(N); order = new Uint32Array(N); activation = new Float32Array(N);
    const colourBy = $("colour-by");
    colourBy.append(el("option", { value: "concept", text: "concept activation" }));
    if (D.groups) {
      groupCodes = data.group_codes;
      groupColours = D.groups.colors.map(hexWord);
      colourBy.append(el("option", { value: "group", text: D.groups.key }));
      groupOrder = new Uint32Array(N); // a fixed shuffle, so no group is always drawn on top
      for (let i = 0; i < N; i++) groupOrder[i] = i;
      let seed = 12345;
      for (let i = N - 1; i > 0; i--) { seed = (seed * 1103515245 + 12345) >>> 0; const j = seed % (i + 1); const t = groupOrder[i]; groupOrder[i] = groupOrder[j]; groupOrder[j] = t; }
    } else colourBy.disabled = true;
    colourBy.addEventListener("change", () => { state.colourBy = colourBy.value; recolour(); });
    const slider = $("point-size");
    slider.value = defaultPointSize();
    slider.addEventListener("input", () => { setPointSize(+slider.value); schedule(); });
    $("reset").addEventListener("click", resetView);
    $("sort").addEventListener("change", sortList);
    buildList();
    setupSearch();
    new ResizeObserver(resize).observe(canvas.parentElement);
    resize();
    let first = 0;
    for (let c = 0; c < K; c++) if (D.stats.n_active[c] > 0) { first = c; break; }
    selectConcept(first);
    draw();
    state.ready = true;
    document.body.dataset.ready = "true";
    $("status").hidden = true;
  }

  window.sigscanExplorer = { state, data: D, selectConcept, showGene, search, redraw: draw };
  start().catch((error) => {
    state.error = String(error && error.message ? error.message : error);
    const status = $("status");
    status.textContent = "The explorer could not start: " + state.error;
    status.classList.add("error");
    console.error(error);
  });
})();
