// rightreasons annotate: the page. No external resources; every request carries the access token.
"use strict";
(function () {
  const TOKEN = new URLSearchParams(location.search).get("token") || "";
  const $ = (id) => document.getElementById(id);
  const canvas = $("view");
  const ctx = canvas.getContext("2d");
  const MASK_RGB = [160, 60, 255];
  const PROPOSAL_RGB = [0, 200, 255];
  const UNDO_BYTES = 64 * 1024 * 1024;
  const KEEP_CLEAN = 40; // examples without unsaved changes kept in memory

  const S = {
    info: null, rows: [], byFile: new Map(), view: [], pos: -1,
    cache: new Map(), cur: null, tool: "brush", erase: false, size: 5, opacity: 0.45, heatOpacity: 0.55,
    show: { mask: true, heat: true, proposal: true },
    gesture: null, poly: [], hover: null, saving: false, loadSeq: 0,
  };

  // ------------------------------------------------------------------------------------------- requests

  function url(path, params) {
    const q = new URLSearchParams(params || {});
    return path + (q.toString() ? "?" + q.toString() : "");
  }

  async function request(path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    opts.headers["X-Token"] = TOKEN;
    opts.cache = "no-store";
    const res = await fetch(path, opts);
    return res;
  }

  async function errorOf(res) {
    try {
      const body = await res.json();
      return body.error || res.statusText;
    } catch (e) {
      return res.status + " " + res.statusText;
    }
  }

  async function postJSON(path, obj) {
    const res = await request(path, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(obj),
    });
    let body = null;
    try { body = await res.json(); } catch (e) { body = { error: res.status + " " + res.statusText }; }
    return { status: res.status, body: body };
  }

  function status(text, kind) {
    const el = $("status");
    el.textContent = text;
    el.className = kind || "";
  }

  // ------------------------------------------------------------------------------------------- examples

  async function bitmapOf(res) {
    const blob = await res.blob();
    return createImageBitmap(blob, { premultiplyAlpha: "none", colorSpaceConversion: "none" });
  }

  function pixelsOf(bitmap) {
    const c = document.createElement("canvas");
    c.width = bitmap.width;
    c.height = bitmap.height;
    const g = c.getContext("2d", { willReadFrequently: true });
    g.drawImage(bitmap, 0, 0);
    const data = g.getImageData(0, 0, c.width, c.height).data;
    const out = new Uint8Array(c.width * c.height);
    for (let i = 0; i < out.length; i++) out[i] = data[4 * i] >= 128 ? 1 : 0;
    return out;
  }

  function overlayCanvas(w, h) {
    const c = document.createElement("canvas");
    c.width = w;
    c.height = h;
    const g = c.getContext("2d");
    return { canvas: c, g: g, image: g.createImageData(w, h) };
  }

  function paintOverlay(layer, bits, w, rgb, x0, y0, x1, y1) {
    // repaint [x0, x1) x [y0, y1) of an overlay from the 0/1 array bits
    const d = layer.image.data;
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const i = y * w + x, j = 4 * i;
        if (bits[i]) { d[j] = rgb[0]; d[j + 1] = rgb[1]; d[j + 2] = rgb[2]; d[j + 3] = 255; } else { d[j + 3] = 0; }
      }
    }
    if (x1 > x0 && y1 > y0) layer.g.putImageData(layer.image, 0, 0, x0, y0, x1 - x0, y1 - y0);
  }

  async function fetchMask(ex) {
    const res = await request(url("api/mask", { file: ex.file }));
    if (!res.ok) throw new Error(await errorOf(res));
    const version = (res.headers.get("ETag") || "").replace(/"/g, "");
    const bits = pixelsOf(await bitmapOf(res));
    if (bits.length !== ex.w * ex.h) throw new Error("the mask does not have the image's size");
    ex.mask = bits;
    ex.saved = bits.slice();
    ex.version = version;
    ex.maskState = res.headers.get("X-Mask-State") || "";
    ex.note = res.headers.get("X-Mask-Note") || "";
    ex.undoSaves = parseInt(res.headers.get("X-Undo") || "0", 10);
    ex.undo = [];
    ex.redo = [];
    ex.dirty = false;
    ex.conflict = "";
    paintOverlay(ex.maskLayer, ex.mask, ex.w, MASK_RGB, 0, 0, ex.w, ex.h);
  }

  async function loadExample(file) {
    let ex = S.cache.get(file);
    if (ex) {
      S.cache.delete(file); // re-inserted below: most recently used last
      S.cache.set(file, ex);
      if (!ex.dirty && !ex.conflict) await fetchMask(ex); // another tab may have saved it meanwhile
      return ex;
    }
    const res = await request(url("api/image", { file: file }));
    if (!res.ok) throw new Error(await errorOf(res));
    const img = await bitmapOf(res);
    ex = { file: file, img: img, w: img.width, h: img.height, heat: null, proposal: null };
    ex.maskLayer = overlayCanvas(ex.w, ex.h);
    await fetchMask(ex);
    const row = S.byFile.get(file);
    const extras = [];
    if (S.info.run) {
      extras.push(request(url("api/saliency", { file: file })).then(async (r) => {
        if (r.ok) ex.heat = await bitmapOf(r);
      }));
    }
    if (row && row.proposal) {
      extras.push(request(url("api/proposal", { file: file })).then(async (r) => {
        if (!r.ok) return;
        ex.proposal = pixelsOf(await bitmapOf(r));
        ex.proposalLayer = overlayCanvas(ex.w, ex.h);
        paintOverlay(ex.proposalLayer, ex.proposal, ex.w, PROPOSAL_RGB, 0, 0, ex.w, ex.h);
      }));
    }
    await Promise.all(extras);
    S.cache.set(file, ex);
    evict();
    return ex;
  }

  function evict() {
    let clean = 0;
    for (const ex of S.cache.values()) if (!ex.dirty) clean++;
    for (const [file, ex] of S.cache) {
      if (clean <= KEEP_CLEAN) break;
      if (!ex.dirty && ex !== S.cur) { S.cache.delete(file); clean--; }
    }
  }

  // ------------------------------------------------------------------------------------------- the view

  function passes(row, filter, t) {
    const ex = S.cache.get(row.file);
    switch (filter) {
      case "unannotated": return !row.mask;
      case "annotated": return row.mask;
      case "unsaved": return !!(ex && ex.dirty);
      case "wrong": return row.correct === false;
      case "relies_mask": return row.share_mask != null && row.share_mask >= t;
      case "relies_proposal": return row.share_proposal != null && row.share_proposal >= t;
      case "to_review": return !!row.proposal && !row.review;
      default: return true;
    }
  }

  function rebuildView(keepFile) {
    const filter = $("filter").value, sort = $("sort").value;
    const t = parseFloat($("threshold").value) || 0;
    let view = [];
    for (let i = 0; i < S.rows.length; i++) if (passes(S.rows[i], filter, t)) view.push(i);
    if (sort === "share_mask" || sort === "share_proposal") {
      const v = (i) => (S.rows[i][sort] == null ? -1 : S.rows[i][sort]);
      view.sort((a, b) => v(b) - v(a) || a - b);
    }
    S.view = view;
    let pos = keepFile ? view.findIndex((i) => S.rows[i].file === keepFile) : -1;
    if (pos < 0 && view.length) pos = 0;
    S.pos = pos;
    renderList();
    updatePosition();
    return pos;
  }

  function marks(row) {
    const ex = S.cache.get(row.file);
    const parts = [];
    if (ex && ex.dirty) parts.push(["dirty", "\u270e"]);
    parts.push(["", row.mask ? "\u25cf" : "\u25cb"]);
    if (row.correct === false) parts.push(["wrong", "\u2717"]);
    if (row.proposal) parts.push(["", row.review === "accepted" ? "\u25c6\u2713" : row.review === "rejected" ? "\u25c7\u2717" : "\u25c6"]);
    if (row.share_mask != null) parts.push(["", row.share_mask.toFixed(2)]);
    return parts;
  }

  function rowElement(k) {
    const row = S.rows[S.view[k]];
    const div = document.createElement("div");
    div.className = "row" + (k === S.pos ? " current" : "");
    div.dataset.k = String(k);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = row.file;
    name.title = row.file + " (" + row.label + ")";
    const m = document.createElement("span");
    m.className = "marks";
    for (const [cls, text] of marks(row)) {
      const s = document.createElement("span");
      if (cls) s.className = cls;
      s.textContent = text + " ";
      m.appendChild(s);
    }
    div.appendChild(name);
    div.appendChild(m);
    return div;
  }

  function renderList() {
    const list = $("list");
    const frag = document.createDocumentFragment();
    for (let k = 0; k < S.view.length; k++) frag.appendChild(rowElement(k));
    if (!S.view.length) {
      const p = document.createElement("div");
      p.className = "empty";
      p.textContent = "No example matches this filter.";
      frag.appendChild(p);
    }
    list.replaceChildren(frag);
    scrollToCurrent();
  }

  function refreshRow(file) {
    const k = S.view.findIndex((i) => S.rows[i].file === file);
    const old = k >= 0 ? $("list").querySelector('.row[data-k="' + k + '"]') : null;
    if (old) old.replaceWith(rowElement(k));
  }

  function scrollToCurrent() {
    const el = $("list").querySelector(".row.current");
    if (el) el.scrollIntoView({ block: "nearest" });
  }

  function updatePosition() {
    $("position").textContent = S.view.length ? (S.pos + 1) + " / " + S.view.length : "0 / 0";
    $("prev").disabled = S.pos <= 0;
    $("next").disabled = S.pos < 0 || S.pos >= S.view.length - 1;
  }

  function describe(ex) {
    const row = S.byFile.get(ex.file);
    const info = $("info");
    info.replaceChildren();
    const add = (text, cls) => {
      const s = document.createElement("span");
      if (cls) s.className = cls;
      s.textContent = text;
      info.appendChild(s);
    };
    add(ex.file + " \u00b7 " + ex.w + "\u00d7" + ex.h + " \u00b7 label ");
    add(row.label, "");
    if (row.split) add(" \u00b7 " + row.split);
    add(" \u00b7 mask: " + (ex.maskState === "saved" ? "saved" : ex.maskState === "missing" ? "file missing" : "none"));
    if (ex.dirty) add(" (unsaved changes)", "bad");
    if (row.pred !== undefined) {
      add(" \u00b7 model: ");
      add(row.pred + " (" + row.confidence.toFixed(2) + ")", row.correct ? "good" : "bad");
      if (row.share_mask != null) add(" \u00b7 gradient share in mask " + row.share_mask.toFixed(2));
      if (row.share_proposal != null) add(" \u00b7 gradient share in proposal " + row.share_proposal.toFixed(2));
    }
    if (row.proposal) add(" \u00b7 proposal" + (row.review ? " " + row.review : " (not reviewed)"));
    $("note").textContent = ex.note || "";
    $("undo-save").disabled = !(ex.undoSaves > 0);
    $("accept").disabled = !ex.proposal;
    $("reject").disabled = !ex.proposal;
    const conflict = $("conflict");
    conflict.hidden = !ex.conflict;
    $("conflict-text").textContent = ex.conflict || "";
  }

  async function show(pos) {
    if (pos < 0 || pos >= S.view.length) {
      S.cur = null;
      render();
      return;
    }
    S.pos = pos;
    const file = S.rows[S.view[pos]].file;
    const seq = ++S.loadSeq;
    document.body.dataset.ready = "0";
    S.gesture = null;
    S.poly = [];
    for (const el of $("list").querySelectorAll(".row.current")) el.classList.remove("current");
    const el = $("list").querySelector('.row[data-k="' + pos + '"]');
    if (el) el.classList.add("current");
    scrollToCurrent();
    updatePosition();
    let ex;
    try {
      ex = await loadExample(file);
    } catch (e) {
      if (seq === S.loadSeq) status("Cannot load " + file + ": " + e.message, "error");
      return;
    }
    if (seq !== S.loadSeq) return; // the user moved on meanwhile
    S.cur = ex;
    history.replaceState(null, "", "#" + encodeURIComponent(file));
    if (!S.sizeSet) {
      S.size = Math.max(1, Math.min(64, Math.round(Math.min(ex.w, ex.h) / 16)));
      $("size").value = String(S.size);
      $("size-text").textContent = String(S.size);
      S.sizeSet = true;
    }
    fit();
    describe(ex);
    render();
    document.body.dataset.file = file;
    document.body.dataset.version = ex.version;
    document.body.dataset.ready = "1";
    if (!document.body.dataset.readyMs) document.body.dataset.readyMs = String(Math.round(performance.now()));
    prefetch(pos + 1);
  }

  function prefetch(pos) {
    if (pos >= S.view.length) return;
    const file = S.rows[S.view[pos]].file;
    if (S.cache.has(file)) return;
    loadExample(file).catch(() => {});
  }

  function go(delta) {
    const pos = S.pos + delta;
    if (pos >= 0 && pos < S.view.length) show(pos);
  }

  // ------------------------------------------------------------------------------------------- drawing

  function fit() {
    const ex = S.cur;
    if (!ex) return;
    const stage = $("stage");
    const sw = Math.max(50, stage.clientWidth - 8), sh = Math.max(50, stage.clientHeight - 8);
    let scale = Math.min(sw / ex.w, sh / ex.h);
    if (scale > 1) scale = Math.max(1, Math.floor(scale));
    canvas.width = Math.max(1, Math.round(ex.w * scale));
    canvas.height = Math.max(1, Math.round(ex.h * scale));
    S.scale = canvas.width / ex.w;
  }

  let frame = 0;
  function render() {
    if (frame) return;
    frame = requestAnimationFrame(() => { frame = 0; draw(); });
  }

  function draw() {
    const ex = S.cur;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!ex) return;
    const W = canvas.width, H = canvas.height, k = S.scale;
    ctx.imageSmoothingEnabled = false;
    ctx.globalAlpha = 1;
    ctx.drawImage(ex.img, 0, 0, W, H);
    if (S.show.heat && ex.heat) {
      ctx.imageSmoothingEnabled = true;
      ctx.globalAlpha = S.heatOpacity;
      ctx.drawImage(ex.heat, 0, 0, W, H);
      ctx.imageSmoothingEnabled = false;
    }
    const row = S.byFile.get(ex.file);
    if (S.show.proposal && ex.proposalLayer && row.review !== "rejected") {
      ctx.globalAlpha = 0.4;
      ctx.drawImage(ex.proposalLayer.canvas, 0, 0, W, H);
    }
    if (S.show.mask) {
      ctx.globalAlpha = S.opacity;
      ctx.drawImage(ex.maskLayer.canvas, 0, 0, W, H);
    }
    ctx.globalAlpha = 1;
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = S.eraseNow ? "#ffffff" : "#ffeb3b";
    const g = S.gesture;
    if (g && g.tool === "box" && g.to) {
      ctx.setLineDash([5, 4]);
      ctx.strokeRect(Math.min(g.from[0], g.to[0]) * k, Math.min(g.from[1], g.to[1]) * k,
        Math.abs(g.to[0] - g.from[0]) * k, Math.abs(g.to[1] - g.from[1]) * k);
      ctx.setLineDash([]);
    }
    if (S.tool === "polygon" && S.poly.length) {
      ctx.beginPath();
      ctx.moveTo(S.poly[0][0] * k, S.poly[0][1] * k);
      for (const p of S.poly.slice(1)) ctx.lineTo(p[0] * k, p[1] * k);
      if (S.hover) ctx.lineTo(S.hover[0] * k, S.hover[1] * k);
      ctx.stroke();
      for (const p of S.poly) ctx.fillRect(p[0] * k - 2, p[1] * k - 2, 4, 4);
    }
    if ((S.tool === "brush" || S.tool === "eraser") && S.hover) {
      ctx.beginPath();
      ctx.arc(S.hover[0] * k, S.hover[1] * k, Math.max(1, S.size / 2 * k), 0, 2 * Math.PI);
      ctx.strokeStyle = S.tool === "eraser" ? "#ffffff" : "#ffeb3b";
      ctx.stroke();
    }
  }

  function imagePoint(e) {
    const r = canvas.getBoundingClientRect();
    const ex = S.cur;
    return [(e.clientX - r.left) / r.width * ex.w, (e.clientY - r.top) / r.height * ex.h];
  }

  function pushUndo(ex) {
    ex.undo.push(ex.mask.slice());
    const most = Math.max(5, Math.floor(UNDO_BYTES / Math.max(1, ex.mask.length)));
    while (ex.undo.length > most) ex.undo.shift();
    ex.redo = [];
  }

  function changed(ex, x0, y0, x1, y1) {
    x0 = Math.max(0, x0); y0 = Math.max(0, y0); x1 = Math.min(ex.w, x1); y1 = Math.min(ex.h, y1);
    paintOverlay(ex.maskLayer, ex.mask, ex.w, MASK_RGB, x0, y0, x1, y1);
  }

  function markDirty(ex) {
    let dirty = false;
    const a = ex.mask, b = ex.saved;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) { dirty = true; break; }
    if (dirty !== ex.dirty) {
      ex.dirty = dirty;
      refreshRow(ex.file);
    }
    describe(ex);
    if (dirty) status("Unsaved changes (S to save)", "warn");
  }

  function stamp(ex, cx, cy, r, v) {
    const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(ex.w - 1, Math.floor(cx + r));
    const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(ex.h - 1, Math.floor(cy + r));
    const r2 = r * r;
    for (let y = y0; y <= y1; y++) {
      const dy = y + 0.5 - cy;
      for (let x = x0; x <= x1; x++) {
        const dx = x + 0.5 - cx;
        if (dx * dx + dy * dy <= r2) ex.mask[y * ex.w + x] = v;
      }
    }
    const px = Math.floor(cx), py = Math.floor(cy);
    if (px >= 0 && py >= 0 && px < ex.w && py < ex.h) ex.mask[py * ex.w + px] = v;
    changed(ex, x0, y0, x1 + 1, y1 + 1);
  }

  function strokeTo(ex, a, b, v) {
    const r = S.size / 2;
    const d = Math.hypot(b[0] - a[0], b[1] - a[1]);
    const steps = Math.max(1, Math.ceil(d / Math.max(0.5, r / 2)));
    for (let i = 1; i <= steps; i++) {
      const t = i / steps;
      stamp(ex, a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, r, v);
    }
  }

  function fillBox(ex, a, b, v) {
    const xa = Math.min(a[0], b[0]), xb = Math.max(a[0], b[0]);
    const ya = Math.min(a[1], b[1]), yb = Math.max(a[1], b[1]);
    const x0 = Math.max(0, Math.ceil(xa - 0.5)), x1 = Math.min(ex.w, Math.ceil(xb - 0.5));
    const y0 = Math.max(0, Math.ceil(ya - 0.5)), y1 = Math.min(ex.h, Math.ceil(yb - 0.5));
    for (let y = y0; y < y1; y++) ex.mask.fill(v, y * ex.w + x0, y * ex.w + Math.max(x0, x1));
    changed(ex, x0, y0, x1, y1);
  }

  function fillPolygon(ex, pts, v) {
    // even-odd fill of the pixels whose centres lie inside the polygon
    let ya = Infinity, yb = -Infinity;
    for (const p of pts) { ya = Math.min(ya, p[1]); yb = Math.max(yb, p[1]); }
    const y0 = Math.max(0, Math.floor(ya)), y1 = Math.min(ex.h - 1, Math.ceil(yb));
    let xmin = ex.w, xmax = 0;
    for (let y = y0; y <= y1; y++) {
      const cy = y + 0.5, xs = [];
      for (let i = 0; i < pts.length; i++) {
        const p = pts[i], q = pts[(i + 1) % pts.length];
        if ((p[1] <= cy) !== (q[1] <= cy)) xs.push(p[0] + (cy - p[1]) / (q[1] - p[1]) * (q[0] - p[0]));
      }
      xs.sort((a, b) => a - b);
      for (let j = 0; j + 1 < xs.length; j += 2) {
        const x0 = Math.max(0, Math.ceil(xs[j] - 0.5)), x1 = Math.min(ex.w, Math.ceil(xs[j + 1] - 0.5));
        if (x1 > x0) {
          ex.mask.fill(v, y * ex.w + x0, y * ex.w + x1);
          xmin = Math.min(xmin, x0); xmax = Math.max(xmax, x1);
        }
      }
    }
    changed(ex, xmin, y0, xmax, y1 + 1);
  }

  function closePolygon() {
    const ex = S.cur;
    if (!ex || S.poly.length < 3) { S.poly = []; render(); return; }
    pushUndo(ex);
    fillPolygon(ex, S.poly, S.polyErase ? 0 : 1);
    S.poly = [];
    markDirty(ex);
    render();
  }

  function eraseFor(e) {
    if (S.tool === "eraser") return true;
    if (S.tool === "brush") return false;
    return e.shiftKey ? !S.erase : S.erase;
  }

  canvas.addEventListener("pointerdown", (e) => {
    const ex = S.cur;
    if (!ex || e.button !== 0) return;
    canvas.focus();
    const p = imagePoint(e);
    S.eraseNow = eraseFor(e);
    if (S.tool === "polygon") {
      if (S.poly.length === 0) S.polyErase = S.eraseNow;
      const first = S.poly[0];
      if (S.poly.length >= 3 && Math.hypot((p[0] - first[0]) * S.scale, (p[1] - first[1]) * S.scale) < 8) {
        closePolygon();
      } else {
        S.poly.push(p);
      }
      render();
      return;
    }
    canvas.setPointerCapture(e.pointerId);
    pushUndo(ex);
    S.gesture = { tool: S.tool, from: p, last: p, to: null };
    if (S.tool === "brush" || S.tool === "eraser") {
      stamp(ex, p[0], p[1], S.size / 2, S.tool === "eraser" ? 0 : 1);
    }
    render();
  });

  canvas.addEventListener("pointermove", (e) => {
    if (!S.cur) return;
    const p = imagePoint(e);
    S.hover = p;
    const g = S.gesture;
    if (g) {
      if (g.tool === "brush" || g.tool === "eraser") {
        strokeTo(S.cur, g.last, p, g.tool === "eraser" ? 0 : 1);
        g.last = p;
      } else if (g.tool === "box") {
        g.to = p;
      }
    }
    render();
  });

  function endGesture(e) {
    const g = S.gesture, ex = S.cur;
    if (!g || !ex) return;
    S.gesture = null;
    const p = imagePoint(e);
    if (g.tool === "brush" || g.tool === "eraser") {
      strokeTo(ex, g.last, p, g.tool === "eraser" ? 0 : 1);
    } else if (g.tool === "box") {
      if (Math.abs(p[0] - g.from[0]) > 0 && Math.abs(p[1] - g.from[1]) > 0) fillBox(ex, g.from, p, S.eraseNow ? 0 : 1);
    }
    markDirty(ex);
    render();
  }

  canvas.addEventListener("pointerup", endGesture);
  canvas.addEventListener("pointercancel", endGesture);
  canvas.addEventListener("pointerleave", () => { S.hover = null; render(); });
  canvas.addEventListener("dblclick", (e) => { if (S.tool === "polygon") { e.preventDefault(); closePolygon(); } });
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());

  // ------------------------------------------------------------------------------------------- actions

  function setTool(tool) {
    S.tool = tool;
    S.poly = [];
    for (const b of document.querySelectorAll("#tool-buttons button")) b.classList.toggle("active", b.dataset.tool === tool);
    render();
  }

  function setErase(on) {
    S.erase = on;
    $("mode").textContent = "Mode: " + (on ? "erase" : "draw");
    $("mode").classList.toggle("active", on);
  }

  function setSize(n) {
    S.size = Math.max(1, Math.min(64, n));
    $("size").value = String(S.size);
    $("size-text").textContent = String(S.size);
    render();
  }

  function undoStroke() {
    const ex = S.cur;
    if (!ex || !ex.undo.length) return;
    ex.redo.push(ex.mask);
    ex.mask = ex.undo.pop();
    changed(ex, 0, 0, ex.w, ex.h);
    markDirty(ex);
    render();
  }

  function redoStroke() {
    const ex = S.cur;
    if (!ex || !ex.redo.length) return;
    ex.undo.push(ex.mask);
    ex.mask = ex.redo.pop();
    changed(ex, 0, 0, ex.w, ex.h);
    markDirty(ex);
    render();
  }

  function clearMask() {
    const ex = S.cur;
    if (!ex) return;
    pushUndo(ex);
    ex.mask.fill(0);
    changed(ex, 0, 0, ex.w, ex.h);
    markDirty(ex);
    render();
  }

  function pngBase64(ex) {
    const c = document.createElement("canvas");
    c.width = ex.w;
    c.height = ex.h;
    const g = c.getContext("2d");
    const img = g.createImageData(ex.w, ex.h);
    const d = img.data;
    for (let i = 0; i < ex.mask.length; i++) {
      const v = ex.mask[i] ? 255 : 0, j = 4 * i;
      d[j] = v; d[j + 1] = v; d[j + 2] = v; d[j + 3] = 255;
    }
    g.putImageData(img, 0, 0);
    return new Promise((resolve, reject) => {
      c.toBlob((blob) => {
        if (!blob) { reject(new Error("cannot encode the mask")); return; }
        const reader = new FileReader();
        reader.onload = () => resolve(String(reader.result).split(",")[1]);
        reader.onerror = () => reject(new Error("cannot encode the mask"));
        reader.readAsDataURL(blob);
      }, "image/png");
    });
  }

  function conflictWith(ex, message) {
    ex.conflict = message + " Your drawing here is not saved: reload this image (or the page) to see the " +
      "current mask, then redo it.";
    status("Not saved: conflict", "error");
    describe(ex);
  }

  async function save() {
    const ex = S.cur;
    if (!ex || S.saving) return;
    if (ex.conflict) { status("Not saved: reload this image first (it changed elsewhere)", "error"); return; }
    S.saving = true;
    status("Saving\u2026", "");
    try {
      const snapshot = ex.mask.slice();
      const png = await pngBase64(ex);
      const res = await postJSON("api/save", { file: ex.file, version: ex.version, png: png });
      if (res.status === 200) {
        ex.version = res.body.version;
        ex.saved = snapshot;
        ex.maskState = "saved";
        ex.note = "";
        ex.undoSaves = res.body.undo;
        const row = S.byFile.get(ex.file);
        row.mask = true;
        if ("share_mask" in res.body) row.share_mask = res.body.share_mask;
        ex.dirty = false;
        markDirty(ex);
        refreshRow(ex.file);
        if (S.cur === ex) document.body.dataset.version = ex.version;
        status("Saved " + res.body.mask, "ok");
      } else if (res.status === 409) {
        conflictWith(ex, res.body.error || "This mask was changed elsewhere.");
      } else {
        status("Not saved: " + (res.body.error || res.status), "error");
      }
    } catch (e) {
      status("Not saved: " + e.message, "error");
    } finally {
      S.saving = false;
    }
  }

  async function undoSave() {
    const ex = S.cur;
    if (!ex || S.saving) return;
    if (!(ex.undoSaves > 0)) { status("No saved change of this image to undo", "warn"); return; }
    if (ex.dirty && !window.confirm("Undoing the last save discards the unsaved drawing on this image. Go on?")) return;
    S.saving = true;
    try {
      const res = await postJSON("api/undo", { file: ex.file, version: ex.version });
      if (res.status === 200) {
        await fetchMask(ex);
        const row = S.byFile.get(ex.file);
        row.mask = ex.maskState === "saved";
        if ("share_mask" in res.body) row.share_mask = res.body.share_mask;
        refreshRow(ex.file);
        describe(ex);
        render();
        document.body.dataset.version = ex.version;
        status("Undid save " + res.body.undone, "ok");
      } else if (res.status === 409) {
        conflictWith(ex, res.body.error || "This mask was changed elsewhere.");
      } else {
        status("Not undone: " + (res.body.error || res.status), "error");
      }
    } catch (e) {
      status("Not undone: " + e.message, "error");
    } finally {
      S.saving = false;
    }
  }

  async function reloadExample() {
    const ex = S.cur;
    if (!ex) return;
    try {
      await fetchMask(ex);
      refreshRow(ex.file);
      describe(ex);
      render();
      document.body.dataset.version = ex.version;
      status("Reloaded the saved mask", "ok");
    } catch (e) {
      status("Cannot reload: " + e.message, "error");
    }
  }

  async function review(decision) {
    const ex = S.cur;
    if (!ex || !ex.proposal) { status("No proposal for this image", "warn"); return; }
    if (decision === "accepted") {
      pushUndo(ex);
      for (let i = 0; i < ex.mask.length; i++) if (ex.proposal[i]) ex.mask[i] = 1;
      changed(ex, 0, 0, ex.w, ex.h);
      markDirty(ex);
    }
    const res = await postJSON("api/review", { file: ex.file, decision: decision });
    if (res.status !== 200) { status("Review not recorded: " + res.body.error, "error"); return; }
    S.byFile.get(ex.file).review = decision;
    refreshRow(ex.file);
    describe(ex);
    render();
    status(decision === "accepted" ? "Proposal added to the mask: save with S" : "Proposal rejected", "ok");
  }

  function toggle(name, id) {
    S.show[name] = !S.show[name];
    $(id).checked = S.show[name];
    render();
  }

  // ------------------------------------------------------------------------------------------- wiring

  document.addEventListener("keydown", (e) => {
    const tag = (e.target && e.target.tagName) || "";
    if ((tag === "INPUT" && e.target.type !== "checkbox" && e.target.type !== "range") || tag === "SELECT") {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    const key = e.key, lower = key.length === 1 ? key.toLowerCase() : key;
    const mod = e.ctrlKey || e.metaKey;
    let handled = true;
    if (mod && lower === "s") save();
    else if (mod && lower === "z" && e.shiftKey) redoStroke();
    else if (mod && lower === "z") undoStroke();
    else if (mod && lower === "y") redoStroke();
    else if (mod || e.altKey) handled = false;
    else if (key === "ArrowRight" || key === ".") go(1);
    else if (key === "ArrowLeft" || key === ",") go(-1);
    else if (lower === "b") { setTool("brush"); }
    else if (lower === "e") { setTool("eraser"); }
    else if (lower === "r") setTool("box");
    else if (lower === "p") setTool("polygon");
    else if (lower === "x") setErase(!S.erase);
    else if (key === "[") setSize(S.size - 1);
    else if (key === "]") setSize(S.size + 1);
    else if (lower === "s") save();
    else if (lower === "z") undoStroke();
    else if (lower === "y") redoStroke();
    else if (lower === "u") undoSave();
    else if (lower === "c") clearMask();
    else if (lower === "a") review("accepted");
    else if (lower === "d") review("rejected");
    else if (lower === "m") toggle("mask", "show-mask");
    else if (lower === "h") toggle("heat", "show-heat");
    else if (lower === "o") toggle("proposal", "show-proposal");
    else if (key === "Enter" && S.tool === "polygon") closePolygon();
    else if (key === "Escape") { S.poly = []; S.gesture = null; render(); }
    else if (key === "Backspace" && S.poly.length) { S.poly.pop(); render(); }
    else handled = false;
    if (handled) e.preventDefault();
  });

  $("prev").addEventListener("click", () => go(-1));
  $("next").addEventListener("click", () => go(1));
  $("list").addEventListener("click", (e) => {
    const row = e.target.closest(".row");
    if (row) show(parseInt(row.dataset.k, 10));
  });
  for (const b of document.querySelectorAll("#tool-buttons button")) b.addEventListener("click", () => setTool(b.dataset.tool));
  $("mode").addEventListener("click", () => setErase(!S.erase));
  $("size").addEventListener("input", () => setSize(parseInt($("size").value, 10)));
  $("opacity").addEventListener("input", () => { S.opacity = parseInt($("opacity").value, 10) / 100; render(); });
  $("heat-opacity").addEventListener("input", () => {
    S.heatOpacity = parseInt($("heat-opacity").value, 10) / 100;
    render();
  });
  $("undo").addEventListener("click", undoStroke);
  $("redo").addEventListener("click", redoStroke);
  $("clear").addEventListener("click", clearMask);
  $("save").addEventListener("click", save);
  $("undo-save").addEventListener("click", undoSave);
  $("reload-example").addEventListener("click", reloadExample);
  $("accept").addEventListener("click", () => review("accepted"));
  $("reject").addEventListener("click", () => review("rejected"));
  $("show-mask").addEventListener("change", (e) => { S.show.mask = e.target.checked; render(); });
  $("show-heat").addEventListener("change", (e) => { S.show.heat = e.target.checked; render(); });
  $("show-proposal").addEventListener("change", (e) => { S.show.proposal = e.target.checked; render(); });
  const refilter = () => {
    const file = S.cur ? S.cur.file : null;
    const pos = rebuildView(file);
    if (pos >= 0 && (!S.cur || S.rows[S.view[pos]].file !== S.cur.file)) show(pos);
    else if (pos < 0) { S.cur = null; render(); }
  };
  $("filter").addEventListener("change", refilter);
  $("sort").addEventListener("change", refilter);
  $("threshold").addEventListener("change", refilter);
  window.addEventListener("resize", () => { fit(); render(); });
  window.addEventListener("beforeunload", (e) => {
    for (const ex of S.cache.values()) {
      if (ex.dirty) { e.preventDefault(); e.returnValue = ""; return; }
    }
  });

  async function start() {
    status("Loading\u2026", "");
    const res = await request("api/index");
    if (!res.ok) { status("Cannot load the index: " + await errorOf(res), "error"); return; }
    S.info = await res.json();
    S.rows = S.info.rows;
    for (const row of S.rows) S.byFile.set(row.file, row);
    const have = { run: !!S.info.run, proposals: !!S.info.proposals };
    for (const opt of document.querySelectorAll("option[data-needs]")) {
      opt.disabled = !opt.dataset.needs.split(" ").every((n) => have[n]);
    }
    $("show-heat").disabled = $("heat-opacity").disabled = !have.run;
    $("show-proposal").disabled = !have.proposals;
    $("accept").disabled = $("reject").disabled = true;
    setTool("brush");
    setErase(false);
    const wanted = location.hash.length > 1 ? decodeURIComponent(location.hash.slice(1)) : null;
    const pos = rebuildView(wanted && S.byFile.has(wanted) ? wanted : null);
    status(S.rows.length + " examples", "");
    document.body.dataset.rows = String(S.rows.length);
    await show(pos);
  }

  start().catch((e) => status("Error: " + e.message, "error"));
})();
