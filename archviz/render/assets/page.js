/* archviz interactive diagram: the dataflow graph of one trace, blocks expandable down to layers.
   Every name comes from the user's model: it reaches the page only through textContent and
   attribute values, never as markup. */
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("archviz-data").textContent);
  const SVGNS = "http://www.w3.org/2000/svg";
  const FONT = "Helvetica, Arial, sans-serif";
  const CLUSTER_FILLS = ["#f8f8f8", "#f0f0f0", "#e8e8e8", "#e0e0e0"];
  const MERGE = { cat: "concat", add: "+", sub: "\u2212", mul: "\u00d7", div: "\u00f7" };
  const PAD = 10, HEAD = 20;

  const nodes = new Map(D.nodes.map((n) => [n.path, n]));
  const ops = new Map(D.ops.map((o) => [o.id, o]));
  const runs = D.runs.map((paths) => ({ paths }));
  const runByFirst = new Map(runs.map((r) => [r.paths[0], r]));
  const hasChildren = new Set();
  for (const n of D.nodes) if (n.path) hasChildren.add(n.path.includes(".") ? n.path.slice(0, n.path.lastIndexOf(".")) : "");

  const state = { expanded: new Set(), unfolded: new Set(), hits: new Set(), selected: null, pinned: false };
  const view = { x: 0, y: 0, k: 1 };
  const layoutCache = new Map();
  let current = null; // the drawn graph: vertices, clusters, edges, positions

  // Control and bidi characters shown as escapes (archviz/safe.py does the same for terminals).
  const UNSAFE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]/g;
  const safe = (s) => String(s).replace(UNSAFE, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));

  const isBlock = (p) => p !== "" && nodes.has(p) && !nodes.get(p).leaf && hasChildren.has(p);
  const inside = (m, p) => p === "" || m === p || m.startsWith(p + ".");
  const parentOf = (p) => (p.includes(".") ? p.slice(0, p.lastIndexOf(".")) : "");
  const ancestors = (p) => { const parts = p ? p.split(".") : [], out = []; for (let k = 1; k < parts.length; k++) out.push(parts.slice(0, k).join(".")); return out; };

  function resetState() {
    state.expanded = new Set(D.nodes.filter((n) => isBlock(n.path) && n.depth < D.depth).map((n) => n.path));
    state.unfolded = new Set(D.fold ? [] : runs.map((r) => r.paths[0]));
  }

  // --- which vertex stands for an op (render/dot.py's build_graph, with "expanded" in place of depth) ---

  const activeRuns = () => runs.filter((r) => !state.unfolded.has(r.paths[0]));
  function instance(run, module) {
    for (let i = 0; i < run.paths.length; i++) if (inside(module, run.paths[i])) return i;
    return null;
  }
  const toFirst = (run, id, i) => run.paths[0] + id.slice(run.paths[i].length);

  function canonical(id, active) {
    for (const run of active) {
      const i = instance(run, ops.get(id).module);
      if (i) id = toFirst(run, id, i);
    }
    return id;
  }

  function vertexOf(op) {
    if (op.op === "input" || op.op === "output") return { id: "@" + op.id, clusters: [] };
    const parts = op.module ? op.module.split(".") : [];
    const limit = op.op === "function" ? parts.length : parts.length - 1;
    const clusters = [];
    for (let k = 1; k <= limit; k++) {
      const a = parts.slice(0, k).join(".");
      if (!isBlock(a)) continue; // a module the trace has no record of: transparent
      if (!state.expanded.has(a)) return { id: a, clusters };
      clusters.push(a);
    }
    return { id: op.id, clusters };
  }

  function buildGraph() {
    const active = activeRuns();
    const vertices = new Map(), where = new Map();
    for (const op of D.ops) {
      if (canonical(op.id, active) !== op.id) continue; // a later copy in a folded run
      const v = vertexOf(op);
      where.set(op.id, v.id);
      if (!vertices.has(v.id)) vertices.set(v.id, { id: v.id, clusters: v.clusters, op: v.id === op.id || v.id === "@" + op.id ? op : null });
    }
    const edges = new Map();
    for (const op of D.ops) {
      for (const input of op.in) {
        let src = input, dst = op.id, skip = false;
        for (const run of active) {
          const i = instance(run, ops.get(src).module), j = instance(run, ops.get(dst).module);
          if (i !== null && j !== null && i !== j) { skip = true; break; }
          if (i) src = toFirst(run, src, i);
          if (j) dst = toFirst(run, dst, j);
        }
        if (skip) continue;
        const a = where.get(src), b = where.get(dst);
        if (a !== undefined && b !== undefined && a !== b) {
          const key = a + "\u0000" + b;
          if (!edges.has(key)) edges.set(key, { a, b, shape: ops.get(src).output, src });
        }
      }
    }
    const folded = new Map();
    for (const run of active) folded.set(run.paths[0], run);
    const tree = new Map([["", []]]); // cluster -> members (cluster paths and vertex ids), first seen first
    for (const v of vertices.values()) {
      let parent = "";
      for (const c of v.clusters) {
        if (!tree.has(c)) { tree.set(c, []); tree.get(parent).push({ cluster: c }); }
        parent = c;
      }
      tree.get(parent).push({ vertex: v.id });
    }
    return { vertices, edges: [...edges.values()], tree, folded };
  }

  // --- text and boxes ---

  const ctx = document.createElement("canvas").getContext("2d");
  const widthCache = new Map();
  function textWidth(text, size, bold) {
    const key = size + (bold ? "b" : "") + text;
    let w = widthCache.get(key);
    if (w === undefined) { ctx.font = (bold ? "bold " : "") + size + "px " + FONT; w = ctx.measureText(text).width; widthCache.set(key, w); }
    return w;
  }
  const shape = (s) => (s ? s.join("\u00d7") : "");
  const count = (n) => n.toLocaleString("en-US");
  function si(n) {
    for (const [u, s] of [["G", 1e9], ["M", 1e6], ["k", 1e3]]) if (n >= s) return (n / s).toPrecision(3).replace(/\.?0+$/, "") + " " + u;
    return String(n) + " ";
  }
  function bytes(n) {
    for (const [u, s] of [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]]) if (n >= s) return (n / s).toFixed(1) + " " + u;
    return n + " B";
  }
  const runLabel = (run) => run.paths[0] + " \u2013 " + run.paths[run.paths.length - 1];

  // A partial page (the forward failed): the failing layer, and the blocks around it, drawn in red.
  const failedModule = D.failed ? ((D.ops.find((o) => o.id === D.failed.op) || {}).module ?? null) : null;
  function isFailed(v) {
    if (!D.failed) return false;
    if (v.op) return v.op.id === D.failed.op;
    return failedModule !== null && v.id !== "" && (failedModule === v.id || failedModule.startsWith(v.id + "."));
  }
  function failureLine() {
    const text = D.failed.error.replace(/^.*? cannot run on input \S+: /, "");  // the layer's own words
    return ["failed: " + (text.length > 90 ? text.slice(0, 87) + "..." : text), 9, false];
  }

  function vertexLines(v, folded) {
    const info = vertexLinesOf(v, folded);
    if (v.op && isFailed(v)) info.lines.push(failureLine());
    return info;
  }

  function vertexLinesOf(v, folded) {
    const op = v.op;
    if (op && (op.op === "input" || op.op === "output")) {
      const name = op.id.includes(":") ? " " + op.id.slice(op.id.indexOf(":") + 1) : "";
      return { lines: [[(op.op === "input" ? "Input" : "Output") + name, 11, true], [shape(op.output) + (op.dtype && op.dtype !== "float32" ? " " + op.dtype : ""), 9, false]], kind: "io" };
    }
    if (op && op.op === "function") {
      if (op.kind === "merge") return { lines: [[MERGE[op.type] || op.type, 11, true]], kind: "merge", round: true };
      return { lines: [[op.type + "  " + op.id, 10, false]], kind: op.kind };
    }
    const n = nodes.get(op ? op.module : v.id);
    if (!n) return { lines: [[op.type + "  " + op.module, 10, false]], kind: op.kind };
    const run = folded.get(n.path);
    const lines = [[n.type + (run ? " \u00d7 " + run.paths.length : "") + "  " + (run ? runLabel(run) : n.path), 11, true]];
    if (n.settings) lines.push([n.settings, 10, false]);
    if (n.params) lines.push([count(n.params) + " params" + (run ? " each" : ""), 9, false]);
    return { lines, kind: n.leaf ? n.kind : "block", block: !n.leaf };
  }

  function measure(v, folded) {
    const info = vertexLines(v, folded);
    info.lines = info.lines.map(([t, s, b]) => [safe(t), s, b]);
    const w = Math.max(...info.lines.map(([t, s, b]) => textWidth(t, s, b)));
    info.width = Math.ceil(w) + (info.block ? 34 : 16);
    info.height = info.lines.reduce((h, [, s]) => h + s + 4, 6);
    if (info.round) { info.width = Math.max(info.width, 44); info.height = 26; }
    return info;
  }

  // --- layout: each expanded block's interior on its own, children as boxes of their size ---

  function layout(graph) {
    const boxes = new Map();
    for (const v of graph.vertices.values()) boxes.set(v.id, measure(v, graph.folded));
    // Each edge is laid out in the block where its two ends part: the members there that hold them.
    const chain = (id) => [...(graph.vertices.get(id).clusters), id];
    const perCluster = new Map();
    for (const e of graph.edges) {
      const ca = chain(e.a), cb = chain(e.b);
      let k = 0;
      while (k < ca.length && k < cb.length && ca[k] === cb[k]) k++;
      const cluster = k === 0 ? "" : ca[k - 1];
      e.cluster = cluster; e.ma = ca[k]; e.mb = cb[k];
      if (!perCluster.has(cluster)) perCluster.set(cluster, []);
      perCluster.get(cluster).push(e);
    }
    const sizes = new Map(), interiors = new Map();
    const lay = (cluster) => {
      const members = graph.tree.get(cluster);
      for (const m of members) if (m.cluster !== undefined) lay(m.cluster);
      const size = (m) => (m.cluster !== undefined ? sizes.get(m.cluster) : { width: boxes.get(m.vertex).width, height: boxes.get(m.vertex).height });
      const pairs = new Map();
      for (const e of perCluster.get(cluster) || []) {
        const key = e.ma + "\u0000" + e.mb;
        if (!pairs.has(key)) pairs.set(key, { v: e.ma, w: e.mb, label: shape(e.shape), n: 0 });
        pairs.get(key).n++;
      }
      // Cached by shape, with names relative to the block: the 32 identical layers of a ViT encoder are laid out once.
      const rel = (id) => (cluster === "" ? id : id.startsWith(cluster + ".") || id.startsWith(cluster + ":") ? id.slice(cluster.length) : "\u0001" + id);
      const ids = members.map((m) => m.cluster ?? m.vertex);
      const relPairs = [...pairs.values()].map((p) => ({ ...p, v: rel(p.v), w: rel(p.w) }));
      const key = JSON.stringify([D.direction, ids.map((id, k) => [rel(id), size(members[k]).width, size(members[k]).height]), relPairs.map((p) => [p.v, p.w, p.label, p.n])]);
      let shared = layoutCache.get(key);
      if (!shared) {
        const sizeOf = new Map(ids.map((id, k) => [rel(id), size(members[k])]));
        const kept = forLayout(relPairs);
        shared = chainLayout(ids.map(rel), kept, sizeOf) || dagreLayout(ids.map(rel), kept, sizeOf);
        layoutCache.set(key, shared);
      }
      const result = { pos: new Map(ids.map((id) => [id, shared.pos.get(rel(id))])), edgePoints: new Map(), dropped: new Set(), width: shared.width, height: shared.height };
      for (const [k, p] of pairs) {
        const points = shared.edgePoints.get(rel(p.v) + "\u0000" + rel(p.w));
        if (points) result.edgePoints.set(k, points); else result.dropped.add(k);
      }
      interiors.set(cluster, result);
      const header = cluster === "" ? 0 : HEAD;
      sizes.set(cluster, { width: Math.max(result.width + 2 * PAD, clusterTitleWidth(cluster, graph) + 52), height: result.height + 2 * PAD + header });
    };
    lay("");
    // Absolute positions: top-left corners, from the outside in.
    const place = new Map();
    const put = (cluster, x0, y0) => {
      const r = interiors.get(cluster), header = cluster === "" ? 0 : HEAD, s = sizes.get(cluster);
      const dx = x0 + (s.width - r.width) / 2, dy = y0 + PAD + header;
      place.set(cluster, { x: x0, y: y0, width: s.width, height: s.height, dx, dy });
      for (const m of graph.tree.get(cluster)) {
        const id = m.cluster ?? m.vertex, p = r.pos.get(id);
        if (m.cluster !== undefined) { const cs = sizes.get(m.cluster); put(m.cluster, dx + p.x - cs.width / 2, dy + p.y - cs.height / 2); }
        else { const b = boxes.get(id); place.set(id, { x: dx + p.x - b.width / 2, y: dy + p.y - b.height / 2, width: b.width, height: b.height }); }
      }
    };
    put("", 0, 0);
    return { boxes, place, interiors, size: sizes.get("") };
  }

  // Where many inputs meet (DenseNet's concatenations read every earlier layer), an input that also
  // reaches the meeting point through another one is left out of the layout: the layers then stand in
  // one column and the left-out edges are drawn as arcs beside it, instead of a layout that spends
  // seconds on hundreds of long edges and spreads them metres wide.
  function forLayout(pairs) {
    const preds = new Map(), succ = new Map();
    for (const p of pairs) {
      if (!preds.has(p.w)) preds.set(p.w, []);
      preds.get(p.w).push(p);
      if (!succ.has(p.v)) succ.set(p.v, []);
      succ.get(p.v).push(p.w);
    }
    const heavy = [...preds.values()].filter((ps) => ps.length >= 3);
    if (!heavy.length) return pairs;
    const reached = new Map();
    const reach = (u) => {
      let seen = reached.get(u);
      if (seen) return seen;
      seen = new Set();
      const stack = [...(succ.get(u) || [])];
      while (stack.length) { const x = stack.pop(); if (!seen.has(x)) { seen.add(x); stack.push(...(succ.get(x) || [])); } }
      reached.set(u, seen);
      return seen;
    };
    const drop = new Set();
    for (const ps of heavy) for (const p of ps) if (ps.some((q) => q !== p && reach(p.v).has(q.v))) drop.add(p);
    return pairs.filter((p) => !drop.has(p));
  }

  // Members that form one chain (a Sequential's layers) are stacked without asking dagre.
  function chainLayout(ids, pairs, sizeOf) {
    if (pairs.length !== ids.length - 1) return null;
    const next = new Map(), into = new Set();
    for (const p of pairs) {
      if (next.has(p.v) || into.has(p.w)) return null;
      next.set(p.v, p);
      into.add(p.w);
    }
    const starts = ids.filter((id) => !into.has(id));
    if (starts.length !== 1) return null;
    const order = [starts[0]];
    while (next.has(order[order.length - 1]) && order.length <= ids.length) order.push(next.get(order[order.length - 1]).w);
    if (order.length !== ids.length) return null;
    const tb = D.direction === "TB", across = (id) => (tb ? sizeOf.get(id).width : sizeOf.get(id).height), along = (id) => (tb ? sizeOf.get(id).height : sizeOf.get(id).width);
    const breadth = Math.max(...ids.map(across));
    const pos = new Map(), edgePoints = new Map();
    let at = 0;
    order.forEach((id, i) => {
      if (i > 0) {
        const p = next.get(order[i - 1]), lw = textWidth(p.label, 9, false);
        const from = at, gap = 22 + (p.label && !tb ? 12 : 0), to = at + gap, m = breadth / 2;
        const pt = (a) => (tb ? { x: m, y: a } : { x: a, y: m });
        edgePoints.set(p.v + "\u0000" + p.w, { points: [pt(from), pt((from + to) / 2), pt(to)], x: tb ? m + 6 + lw / 2 : (from + to) / 2, y: tb ? (from + to) / 2 : m - 8 });
        at = to;
      }
      const c = at + along(id) / 2;
      pos.set(id, tb ? { x: breadth / 2, y: c } : { x: c, y: breadth / 2 });
      at += along(id);
    });
    return { pos, edgePoints, width: tb ? breadth : at, height: tb ? at : breadth };
  }

  const stats = { dagreCalls: 0, dagreMs: 0, dagreBiggest: 0 };
  function dagreLayout(ids, pairs, sizeOf) {
    const t0 = performance.now();
    stats.dagreCalls++;
    stats.dagreBiggest = Math.max(stats.dagreBiggest, ids.length);
    const g = new dagre.graphlib.Graph({ multigraph: false });
    g.setGraph({ rankdir: D.direction, nodesep: 14, ranksep: 22, edgesep: 8, marginx: 0, marginy: 0 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const id of ids) g.setNode(id, { width: sizeOf.get(id).width, height: sizeOf.get(id).height });
    for (const p of pairs) g.setEdge(p.v, p.w, { weight: p.n, width: textWidth(p.label, 9, false) + 4, height: 10, labelpos: "r", labeloffset: 4 });
    dagre.layout(g);
    const pos = new Map(g.nodes().map((id) => [id, g.node(id)]));
    const edgePoints = new Map(g.edges().map((e) => [e.v + "\u0000" + e.w, g.edge(e)]));
    stats.dagreMs += performance.now() - t0;
    return { pos, edgePoints, width: g.graph().width || 0, height: g.graph().height || 0 };
  }

  function clusterTitle(cluster, graph) {
    const n = nodes.get(cluster), run = graph.folded.get(cluster);
    if (!n) return safe(cluster);
    return safe((run ? runLabel(run) : n.path) + "  " + n.type + (run ? " \u00d7 " + run.paths.length : "") + (n.params ? "  " + count(n.params) + " params" + (run ? " each" : "") : ""));
  }
  const clusterTitleWidth = (cluster, graph) => textWidth(clusterTitle(cluster, graph), 10, false);

  // --- drawing ---

  const svg = document.getElementById("canvas"), viewport = document.getElementById("viewport");
  function el(tag, attrs, parent) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function text(parent, x, y, content, size, bold, anchor) {
    const t = el("text", { x, y, "font-size": size, "text-anchor": anchor || "middle" }, parent);
    if (bold) t.setAttribute("font-weight", "bold");
    t.textContent = content;
    return t;
  }
  function toggle(parent, x, y, sign, title, action) {
    const g = el("g", { class: "toggle", transform: `translate(${x},${y})` }, parent);
    g.dataset.action = action;
    el("rect", { width: 14, height: 14, rx: 3 }, g);
    text(g, 7, 11, sign, 12, true);
    el("title", {}, g).textContent = title;
    return g;
  }

  // An edge's path: an S-curve between two boxes; along dagre's route where it has one; an arc beside the
  // boxes where it enters or leaves an expanded block far from its target (it would cross the layers between).
  function bowed(p, q, tb, side) {
    const a = tb ? p[0] : p[1], b = tb ? q[0] : q[1];
    if (side === undefined || side === null) side = { before: Math.min(a, b) - 24, after: Math.max(a, b) + 24 };
    // Round the side nearer to the target; a cubic with both control points at c reaches 3/4 of the way to c.
    const after = Math.abs(side.after - b) <= Math.abs(b - side.before);
    const base = after ? Math.max(a, b) : Math.min(a, b);
    const reach = after ? Math.max(base + 24, side.after) : Math.min(base - 24, side.before);
    const c = base + ((reach - base) * 4) / 3;
    return tb ? ` C${c},${p[1]} ${c},${q[1]} ${q[0]},${q[1]}` : ` C${p[0]},${c} ${q[0]},${c} ${q[0]},${q[1]}`;
  }
  function edgePath(start, mid, end, tb, segment) {
    let d = "M" + start;
    if (!mid.length) {
      const [x0, y0] = start, [x1, y1] = end;
      return d + (tb ? ` C${x0},${(y0 + y1) / 2} ${x1},${(y0 + y1) / 2} ${x1},${y1}` : ` C${(x0 + x1) / 2},${y0} ${(x0 + x1) / 2},${y1} ${x1},${y1}`);
    }
    d += segment("a", start, mid[0]);
    for (let i = 1; i < mid.length; i++) {
      const [x, y] = mid[i - 1], [nx, ny] = mid[i];
      d += i === mid.length - 1 ? ` Q${x},${y} ${nx},${ny}` : ` Q${x},${y} ${(x + nx) / 2},${(y + ny) / 2}`;
    }
    const last = mid[mid.length - 1];
    return d + segment("b", last, end);
  }

  function draw() {
    const t0 = performance.now();
    const graph = buildGraph(), t1 = performance.now(), laid = layout(graph);
    current = { graph, laid, buildMs: t1 - t0, layoutMs: performance.now() - t1 };
    viewport.textContent = "";
    const clusterLayer = el("g", {}, viewport), edgeLayer = el("g", {}, viewport), vertexLayer = el("g", {}, viewport);
    const level = (c) => c.split(".").length - 1;
    for (const [c, p] of laid.place) {
      if (c === "" || !graph.tree.has(c) || graph.vertices.has(c)) continue;
      const g = el("g", { class: "cluster" + (state.hits.has(c) ? " hit" : ""), "data-id": c }, clusterLayer);
      el("rect", { class: "frame", x: p.x, y: p.y, width: p.width, height: p.height, rx: 6, fill: CLUSTER_FILLS[Math.min(level(c), 3)] }, g);
      text(g, p.x + 24, p.y + 14, clusterTitle(c, graph), 10, false, "start");
      toggle(g, p.x + 5, p.y + 4, "\u2212", "collapse " + safe(c), "collapse:" + c);
      const run = graph.folded.get(c);
      if (run) toggle(g, p.x + p.width - 19, p.y + 4, "\u21f5", "show all " + run.paths.length + " copies", "unfold:" + c);
    }
    const labelled = new Set();
    for (const e of graph.edges) {
      const a = laid.place.get(e.a), b = laid.place.get(e.b);
      const r = laid.interiors.get(e.cluster), ep = r.edgePoints.get(e.ma + "\u0000" + e.mb), origin = laid.place.get(e.cluster);
      const tb = D.direction === "TB";
      const start = tb ? [a.x + a.width / 2, a.y + a.height] : [a.x + a.width, a.y + a.height / 2];
      const end = tb ? [b.x + b.width / 2, b.y] : [b.x, b.y + b.height / 2];
      // Through the block where the two ends part, along dagre's route there; an edge into or out of an
      // expanded block passes its border where dagre's route meets it, then fans out to the layer.
      const route = ep ? ep.points.map((q) => [origin.dx + q.x, origin.dy + q.y]) : [];
      const mid = route.length ? route.slice(e.ma === e.a ? 1 : 0, e.mb === e.b ? route.length - 1 : route.length) : [];
      // An arc passes beside every box it would cross: those of the blocks it runs through, level with it.
      const clear = (clusters, p, q) => {
        const lo = Math.min(tb ? p[1] : p[0], tb ? q[1] : q[0]), hi = Math.max(tb ? p[1] : p[0], tb ? q[1] : q[0]);
        let before = Infinity, after = -Infinity;
        for (const c of clusters) for (const m of graph.tree.get(c)) {
          const box = laid.place.get(m.cluster ?? m.vertex), a = tb ? box.y : box.x, b = tb ? box.y + box.height : box.x + box.width;
          if (a < hi && b > lo) {
            before = Math.min(before, (tb ? box.x : box.y) - 10);
            after = Math.max(after, (tb ? box.x + box.width : box.y + box.height) + 10);
          }
        }
        return after === -Infinity ? undefined : { before, after };
      };
      const below = (id) => { const cs = graph.vertices.get(id).clusters; return cs.slice(e.cluster === "" ? 0 : cs.indexOf(e.cluster) + 1); };
      // Whether a curve (a function of t in [0, 1]) runs through a box of those blocks, other than its own ends.
      const ends = new Set([...graph.vertices.get(e.a).clusters, ...graph.vertices.get(e.b).clusters]);
      const crosses = (clusters, curve) => {
        for (const c of clusters) for (const m of graph.tree.get(c)) {
          const id = m.cluster ?? m.vertex;
          if (id === e.a || id === e.b || ends.has(id)) continue; // its own ends, and the blocks holding them
          const box = laid.place.get(id);
          for (let t = 0.1; t < 0.95; t += 0.1) {
            const [x, y] = curve(t);
            if (x > box.x + 2 && x < box.x + box.width - 2 && y > box.y + 2 && y < box.y + box.height - 2) return true;
          }
        }
        return false;
      };
      const line = (p, q) => (t) => [p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t];
      const quad = (p, c, q) => (t) => [0, 1].map((k) => (1 - t) * (1 - t) * p[k] + 2 * (1 - t) * t * c[k] + t * t * q[k]);
      // From a block's border to a layer inside (or back out): straight if nothing is in the way, else
      // across first in the gutter inside the border, else in an arc beside the boxes in between.
      const segment = (which, p, q) => {
        const clusters = below(which === "a" ? e.a : e.b);
        if (!crosses(clusters, line(p, q))) return " L" + q;
        const g = PAD / 2;
        const corner = which === "b" ? (tb ? [q[0], p[1] + g] : [p[0] + g, q[1]]) : tb ? [p[0], q[1] - g] : [q[0] - g, p[1]];
        if (!crosses(clusters, quad(p, corner, q))) return ` Q${corner} ${q}`;
        return bowed(p, q, tb, clear(clusters, p, q));
      };
      const d = r.dropped.has(e.ma + "\u0000" + e.mb)
        ? "M" + start + bowed(start, end, tb, clear([e.cluster], start, end))
        : edgePath(start, mid, end, tb, segment);
      const path = el("path", { class: "edge", d, "marker-end": "url(#arrow)" }, edgeLayer);
      el("title", {}, path).textContent = safe(e.a + " \u2192 " + e.b + "  " + shape(e.shape));
      const lkey = e.src + "\u0000" + e.ma + "\u0000" + e.mb;
      if (ep && ep.x !== undefined && !labelled.has(e.src) && !labelled.has(lkey)) {
        labelled.add(e.src); labelled.add(lkey);
        text(edgeLayer, origin.dx + ep.x, origin.dy + ep.y + 3, shape(e.shape), 9, false).setAttribute("fill", "#444");
      }
    }
    for (const v of graph.vertices.values()) {
      const p = laid.place.get(v.id), info = laid.boxes.get(v.id);
      const cls = "vertex" + (state.hits.has(v.id) ? " hit" : "") + (state.selected === v.id ? " selected" : "");
      const g = el("g", { class: cls, "data-id": v.id, transform: `translate(${p.x},${p.y})` }, vertexLayer);
      const fill = info.kind === "io" ? "#ffffff" : D.colours[info.kind] || "#ffffff";
      const failed = isFailed(v);
      if (failed) g.classList.add("failed");
      el("rect", { class: "box", width: p.width, height: p.height, rx: info.round ? p.height / 2 : 5, fill, "stroke-width": info.block || info.kind === "io" ? 1.2 : 0.8 }, g);
      let y = 4;
      info.lines.forEach(([t, s, b]) => { y += s + 2; text(g, info.block ? p.width / 2 + 9 : p.width / 2, y, t, s, b).setAttribute("fill", s < 10 ? "#555" : "#222"); y += 2; });
      if (info.block) {
        toggle(g, 5, 5, "+", "expand " + safe(v.id), "expand:" + v.id);
        const run = graph.folded.get(v.id);
        if (run) toggle(g, 5, 21, "\u21f5", "show all " + run.paths.length + " copies", "unfold:" + v.id);
      }
    }
    if (!svg.querySelector("defs")) {
      const defs = el("defs", {}, svg);
      const m = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse" }, defs);
      el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#666" }, m);
    }
    applyView();
    current.ms = performance.now() - t0;
    return current.ms;
  }

  // --- pan and zoom ---

  function applyView() { viewport.setAttribute("transform", `translate(${view.x},${view.y}) scale(${view.k})`); }
  function fit() {
    const s = current.laid.size, r = svg.getBoundingClientRect();
    const k = Math.min(1.5, (r.width - 20) / Math.max(s.width, 1), (r.height - 20) / Math.max(s.height, 1));
    view.k = Math.max(k, 0.02);
    view.x = (r.width - s.width * view.k) / 2;
    view.y = Math.max(10, (r.height - s.height * view.k) / 2);
    applyView();
  }
  function zoomAt(factor, cx, cy) {
    const k = Math.min(8, Math.max(0.01, view.k * factor));
    view.x = cx - ((cx - view.x) * k) / view.k;
    view.y = cy - ((cy - view.y) * k) / view.k;
    view.k = k;
    applyView();
  }
  function centerOn(id) {
    const p = current && current.laid.place.get(id);
    if (!p) return;
    const r = svg.getBoundingClientRect();
    view.x = r.width / 2 - (p.x + p.width / 2) * view.k;
    // A tall open block shows from its top; a box, a third of the way down.
    view.y = p.height * view.k > r.height * 0.6 ? 30 - p.y * view.k : r.height / 3 - (p.y + p.height / 2) * view.k;
    applyView();
  }
  svg.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const r = svg.getBoundingClientRect();
    zoomAt(Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
  }, { passive: false });
  let drag = null, moved = false; // a drag that moved is not a click on the block frame it started on
  svg.addEventListener("mousedown", (ev) => {
    if (ev.target.closest(".vertex, .toggle")) return;
    drag = { x: ev.clientX - view.x, y: ev.clientY - view.y, x0: ev.clientX, y0: ev.clientY };
    moved = false;
    svg.classList.add("dragging");
  });
  window.addEventListener("mousemove", (ev) => {
    if (!drag) return;
    view.x = ev.clientX - drag.x; view.y = ev.clientY - drag.y;
    moved = moved || Math.abs(ev.clientX - drag.x0) + Math.abs(ev.clientY - drag.y0) > 3;
    applyView();
  });
  window.addEventListener("mouseup", () => { drag = null; svg.classList.remove("dragging"); });

  // --- cards ---

  function card(id) {
    if (id.startsWith("@")) id = id.slice(1);
    const op = ops.get(id);
    const n = nodes.get(id) || (op && op.op === "module" ? nodes.get(op.module) : undefined);
    const graph = current && current.graph;
    if (n) {
      const run = runByFirst.get(n.path);
      return {
        id, name: n.path, type: n.type, settings: n.settings, leaf: n.leaf, inputs: n.inputs, output: n.output, params: n.params,
        trainable_params: n.trainable, macs: n.macs, activation_bytes: n.act, receptive_field: n.rf,
        copies: run && graph && graph.folded.has(n.path) ? run.paths.length : 1,
      };
    }
    if (op) {
      return {
        id, name: op.id, type: op.type, settings: op.dtype ? "dtype " + op.dtype : "", leaf: true, inputs: op.inputs, output: op.output, params: 0,
        trainable_params: 0, macs: op.macs, activation_bytes: op.act, receptive_field: op.rf, copies: 1,
      };
    }
    return null;
  }

  const cardEl = document.getElementById("card");
  function showCard(id) {
    const c = card(id);
    cardEl.textContent = "";
    if (!c) { help(); return; }
    const h = document.createElement("h2");
    h.textContent = safe(c.type) + (c.copies > 1 ? " \u00d7 " + c.copies : "");
    cardEl.appendChild(h);
    const path = document.createElement("div");
    path.className = "path";
    path.textContent = safe(c.name || "(the whole model)");
    cardEl.appendChild(path);
    const rf = c.receptive_field;
    const rfText = rf ? (rf.whole_input ? "the whole input" : rf.text + (rf.jump ? " (jump " + rf.jump.join("\u00d7") + ")" : "")) : "unknown";
    const each = c.copies > 1 ? " each" : "";
    const rows = [
      ["settings", c.settings || "\u2013"],
      ["input", c.inputs.length ? c.inputs.map(shape).join(", ") : "\u2013"],
      ["output", c.output ? shape(c.output) : "not called"],
      ["params", count(c.params) + each + (c.trainable_params !== c.params ? " (" + count(c.trainable_params) + " trainable)" : "")],
      ["MACs", count(c.macs) + (c.macs >= 1000 ? " (" + si(c.macs) + ")" : "") + each],
      ["activation", bytes(c.activation_bytes) + " (fp32 output)"],
      ["receptive field", rfText],
    ];
    const table = document.createElement("table");
    for (const [k, v] of rows) {
      const tr = table.insertRow();
      tr.insertCell().textContent = k;
      const td = tr.insertCell();
      td.textContent = safe(v);
      td.dataset.field = k;
    }
    cardEl.appendChild(table);
    const actions = document.createElement("div");
    actions.className = "actions";
    const button = (label, fn) => { const b = document.createElement("button"); b.textContent = label; b.addEventListener("click", fn); actions.appendChild(b); };
    if (isBlock(c.id)) {
      if (state.expanded.has(c.id)) button("collapse", () => api.collapse(c.id)); else button("expand", () => api.expand(c.id));
    }
    const run = runByFirst.get(c.id);
    if (run) {
      if (state.unfolded.has(c.id)) button("fold \u00d7" + run.paths.length, () => api.fold(c.id)); else button("show all " + run.paths.length + " copies", () => api.unfold(c.id));
    }
    cardEl.appendChild(actions);
  }
  function help() {
    cardEl.textContent = "";
    const p = document.createElement("div");
    p.className = "help";
    p.textContent = "Hover over a box for its card, click to pin it (Esc lets go); + expands a block, \u2212 collapses it, \u21f5 shows every copy of a folded \u00d7N run. " +
      "Drag to pan, scroll to zoom. Search matches layer names and types. MACs count multiply-accumulates (FLOPs = 2 \u00d7 MACs); " +
      "activation memory is the output tensor at fp32, as `archviz cost` reports it.";
    cardEl.appendChild(p);
    const legend = document.createElement("div");
    legend.id = "legend";
    legend.appendChild(document.createTextNode("layers: "));
    for (const [k, c] of Object.entries(D.colours)) { const s = document.createElement("span"); s.style.background = c; s.textContent = k; legend.appendChild(s); }
    cardEl.appendChild(legend);
  }

  svg.addEventListener("click", (ev) => {
    const t = ev.target.closest(".toggle");
    if (t) {
      const [verb, ...rest] = t.dataset.action.split(":"), id = rest.join(":");
      api[verb](id);
      return;
    }
    const v = ev.target.closest(".vertex");
    if (v) { state.selected = v.dataset.id; state.pinned = true; draw(); showCard(v.dataset.id); return; }
    const c = ev.target.closest(".cluster");
    if (c && !moved) { state.pinned = true; showCard(c.dataset.id); }
  });
  window.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") { state.pinned = false; state.selected = null; draw(); help(); }
  });
  svg.addEventListener("dblclick", (ev) => {
    const v = ev.target.closest(".vertex");
    if (v && isBlock(v.dataset.id)) api.expand(v.dataset.id);
  });
  svg.addEventListener("mouseover", (ev) => {
    const v = ev.target.closest(".vertex");
    if (v && !state.pinned) showCard(v.dataset.id);
  });

  // --- search ---

  function search(q) {
    q = String(q).trim().toLowerCase();
    state.hits = new Set();
    if (!q) { draw(); return { matches: [], shown: [] }; }
    const matches = [];
    for (const n of D.nodes) if (n.path && (n.path.toLowerCase().includes(q) || n.type.toLowerCase().includes(q))) matches.push(n.path);
    for (const o of D.ops) if (o.op === "function" && (o.id.toLowerCase().includes(q) || o.type.toLowerCase().includes(q))) matches.push(o.id);
    for (const m of matches) {
      const module = ops.has(m) ? ops.get(m).module : m;
      for (const a of [...ancestors(module), ...(ops.has(m) && ops.get(m).op === "function" ? [module] : [])]) if (isBlock(a)) state.expanded.add(a);
      for (const run of runs) if (instance(run, module)) state.unfolded.add(run.paths[0]);
    }
    for (const m of matches) state.hits.add(m);
    draw();
    const shown = matches.filter((m) => current.graph.vertices.has(m) || current.graph.tree.has(m));
    if (shown.length) centerOn(shown[0]);
    document.getElementById("hits").textContent = matches.length ? matches.length + " found" : "none found";
    return { matches, shown };
  }
  const box = document.getElementById("search");
  box.addEventListener("keydown", (ev) => { if (ev.key === "Enter") search(box.value); });
  box.addEventListener("search", () => search(box.value));

  // --- the hook tests and users drive the page with ---

  const api = {
    expand(path) { if (!isBlock(path)) return false; for (const a of ancestors(path)) if (isBlock(a)) state.expanded.add(a); state.expanded.add(path); draw(); return true; },
    collapse(path) { if (!state.expanded.delete(path)) return false; draw(); return true; },
    unfold(path) { if (!runByFirst.has(path)) return false; state.unfolded.add(path); draw(); return true; },
    fold(path) { if (!state.unfolded.delete(path)) return false; draw(); return true; },
    expandAll(unfold) {
      for (const n of D.nodes) if (isBlock(n.path)) state.expanded.add(n.path);
      if (unfold) for (const r of runs) state.unfolded.add(r.paths[0]);
      return draw();
    },
    reset() { resetState(); state.hits = new Set(); draw(); fit(); },
    search,
    visibleNodes() { return [...current.graph.vertices.keys()]; },
    failed() { return [...current.graph.vertices.values()].filter(isFailed).map((v) => v.id); },
    visibleClusters() { return [...current.graph.tree.keys()].filter((c) => c !== ""); },
    edges() { return current.graph.edges.map((e) => [e.a, e.b]); },
    card,
    select(id) { state.selected = id; state.pinned = true; draw(); showCard(id); },
    cardText() { return cardEl.textContent; },
    transform() { return { x: view.x, y: view.y, k: view.k }; },
    zoom(factor) { const r = svg.getBoundingClientRect(); zoomAt(factor, r.width / 2, r.height / 2); return api.transform(); },
    pan(dx, dy) { view.x += dx; view.y += dy; applyView(); return api.transform(); },
    fit() { fit(); return api.transform(); },
    show(id) { centerOn(id); return api.transform(); },
    lastDrawMs() { return current.ms; },
    stats() { return { ...stats, buildMs: current.buildMs, layoutMs: current.layoutMs, svgMs: current.ms - current.buildMs - current.layoutMs }; },
    size() { return current.laid.size; },
  };

  document.getElementById("title").textContent = safe(D.arch);
  document.getElementById("facts").textContent = safe(D.facts) + (D.failed ? " \u00b7 partial: the forward failed at " + safe(D.failed.op) + " (in red)" : "");
  document.getElementById("expand-all").addEventListener("click", () => { api.expandAll(false); fit(); });
  document.getElementById("collapse-all").addEventListener("click", () => api.reset());
  document.getElementById("fit").addEventListener("click", fit);
  resetState();
  const loadMs = draw();
  fit();
  help();
  window.archviz = Object.assign(api, { ready: true, loadMs });
})();
