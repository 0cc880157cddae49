// formers playground: one panel per loaded model (GET /api/models), its task's form, the result, and beside it
// the attention view (a heatmap of one layer's and head's weights, with token labels). Plain JS, no build step.
"use strict";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

async function postJSON(url, body) {
  const response = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                     body: JSON.stringify(body)});
  return readJSON(response);
}

async function readJSON(response) {
  const data = await response.json();
  if (!response.ok) throw new Error(describe(data.detail) || response.statusText);
  return data;
}

function describe(detail) {
  if (Array.isArray(detail)) return detail.map(d => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("\n");
  return detail;
}

// ---- the attention view ----------------------------------------------------------------------------------------

function attentionView(view, image, focus) {
  const box = el("div", {class: "attention"});
  box.append(el("h3", {}, "Attention"));
  if (!view || !view.layers || view.layers.length === 0) {
    box.append(el("p", {class: "note"}, (view && view.error) || "no attention recorded"));
    return box;
  }
  const layer = el("select", {class: "layer", "aria-label": "layer"});
  view.layers.forEach((l, i) => layer.append(el("option", {value: i}, `${l.name}${l.kind ? " (" + l.kind + ")" : ""}`)));
  const head = el("select", {class: "head", "aria-label": "head"});
  const query = el("select", {class: "query", "aria-label": "query"});
  const queryLabel = el("label", {}, "query ", query);
  const canvas = el("canvas", {class: "heatmap"});
  const overlay = el("canvas", {class: "overlay"});
  const note = el("p", {class: "note"});
  const fillHeads = () => {
    const l = view.layers[layer.value];
    head.replaceChildren(el("option", {value: "mean"}, "mean of heads"));
    for (let h = 0; h < l.heads; h++) head.append(el("option", {value: h}, `head ${h}`));
    head.value = l.heads > 1 ? "0" : "mean";
    query.replaceChildren(...l.queries.map((q, i) => el("option", {value: i}, q)));
  };
  const draw = () => {
    const l = view.layers[layer.value];
    drawHeatmap(canvas, l, head.value, note);
    const onImage = Boolean(image && l.grid);
    queryLabel.hidden = overlay.hidden = !onImage;
    if (onImage) drawOverlay(overlay, image, l, headWeights(l, head.value)[Number(query.value)]);
  };
  layer.addEventListener("change", () => { fillHeads(); draw(); });
  head.addEventListener("change", draw);
  query.addEventListener("change", draw);
  box.append(el("div", {class: "controls"}, el("label", {}, "layer ", layer), el("label", {}, "head ", head),
                queryLabel));
  box.append(el("div", {class: "maps"}, canvas, overlay), note);
  if (view.trimmed) box.append(el("p", {class: "note"}, `showing the last tokens only (${view.trimmed} left out)`));
  box.dataset.layers = view.layers.length;
  layer.value = String(view.layers.length - 1);  // the last layer: closest to the result
  fillHeads();
  const focused = view.layers[layer.value].queries.indexOf(focus);
  if (focused >= 0) query.value = String(focused);  // e.g. the query that found the most confident box
  draw();
  return box;
}

// One query's attention over the image: its weights on the grid tokens (after any [CLS]-like prefix), stretched
// over the picture, redder where it attends more.
function drawOverlay(canvas, image, layer, row) {
  const [gh, gw] = layer.grid, prefix = layer.prefix_tokens || 0;
  const cells = row.slice(prefix, prefix + gh * gw);
  const scale = Math.min(320 / image.width, 320 / image.height);
  canvas.width = Math.round(image.width * scale);
  canvas.height = Math.round(image.height * scale);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "rgba(0, 0, 0, 0.45)";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const max = Math.max(...cells, 1e-12);
  const cw = canvas.width / gw, ch = canvas.height / gh;
  cells.forEach((v, i) => {
    ctx.fillStyle = `rgba(255, 60, 0, ${(0.8 * v / max).toFixed(3)})`;
    ctx.fillRect((i % gw) * cw, Math.floor(i / gw) * ch, cw, ch);
  });
  canvas.dataset.cells = cells.length;
}

function headWeights(layer, head) {
  if (head !== "mean") return layer.weights[Number(head)];
  const n = layer.weights.length;
  return layer.weights[0].map((row, q) => row.map((_, k) => layer.weights.reduce((s, w) => s + w[q][k], 0) / n));
}

function drawHeatmap(canvas, layer, head, note) {
  const w = headWeights(layer, head);
  const tq = w.length, tk = w[0].length;
  const cell = Math.max(3, Math.min(24, Math.floor(420 / Math.max(tq, tk))));
  const ctx = canvas.getContext("2d");
  ctx.font = "11px sans-serif";
  const showLabels = cell >= 8;
  const width = labels => showLabels ? Math.ceil(Math.min(110, Math.max(...labels.map(s => ctx.measureText(s).width)) + 8)) : 0;
  const left = width(layer.queries), top = width(layer.keys);
  canvas.width = left + tk * cell + 2;
  canvas.height = top + tq * cell + 2;
  ctx.font = "11px sans-serif";
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (let q = 0; q < tq; q++) {
    const max = Math.max(...w[q]);  // each row scaled to its own maximum: where this query looks most
    for (let k = 0; k < tk; k++) {
      const t = max > 0 ? w[q][k] / max : 0;
      ctx.fillStyle = `rgb(${Math.round(255 - 215 * t)}, ${Math.round(255 - 165 * t)}, ${Math.round(255 - 75 * t)})`;
      ctx.fillRect(left + k * cell, top + q * cell, cell, cell);
    }
  }
  if (showLabels) {
    ctx.fillStyle = "#222";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    layer.queries.forEach((s, q) => ctx.fillText(s, left - 3, top + q * cell + cell / 2, left - 4));
    ctx.save();
    ctx.rotate(-Math.PI / 2);  // column labels read upwards, starting just above the grid
    ctx.textAlign = "left";
    layer.keys.forEach((s, k) => ctx.fillText(s, -(top - 5), left + k * cell + cell / 2, top - 6));
    ctx.restore();
  }
  canvas.dataset.queries = tq;
  canvas.dataset.keys = tk;
  canvas.onmousemove = event => {
    const r = canvas.getBoundingClientRect();
    const k = Math.floor((event.clientX - r.left - left) / cell), q = Math.floor((event.clientY - r.top - top) / cell);
    if (q >= 0 && q < tq && k >= 0 && k < tk) {
      note.textContent = `${layer.queries[q]} → ${layer.keys[k]}: ${w[q][k].toFixed(4)}`;
    }
  };
  note.textContent = `${tq} queries (rows) × ${tk} keys; each row scaled to its largest weight (hover for values)`;
}

// ---- one panel per task ------------------------------------------------------------------------------------------

function panel(model) {
  const result = el("div", {class: "output"});
  const attention = el("div", {class: "side attention-side"});
  const section = el("section", {class: "panel", id: `model-${model.id}`, "data-model": model.id,
                                 "data-task": model.task, "data-state": "idle"});
  const state = s => { section.dataset.state = s; };
  const fail = error => { result.replaceChildren(el("p", {class: "error"}, String(error.message || error))); state("error"); };
  const show = (view, image, focus) => attention.replaceChildren(attentionView(view, image, focus));
  const form = TASKS[model.task](model, result, show, state, fail);
  section.append(el("h2", {}, model.id, el("span", {class: "task"}, `${model.task} · ${model.family}`)),
                 el("div", {class: "body"}, el("div", {class: "side"}, form, result), attention));
  return section;
}

function formOf(fields, label, run) {
  const button = el("button", {type: "submit"}, label);
  const form = el("form", {}, ...fields, el("div", {class: "row"}, button));
  form.addEventListener("submit", async event => {
    event.preventDefault();
    button.disabled = true;
    try { await run(); } finally { button.disabled = false; }
  });
  return form;
}

function number(name, value, attrs = {}) {
  return el("label", {}, `${name} `, el("input", {type: "number", name, value, ...attrs}));
}

const TASKS = {
  translate(model, result, show, state, fail) {
    const text = el("textarea", {name: "text", rows: 2}, "the cat sat on the mat");
    const beam = number("beam", 1, {min: 1, max: 16});
    return formOf([text, el("div", {class: "row"}, beam)], "Translate", async () => {
      state("running");
      try {
        const r = await postJSON("/api/translate", {model: model.id, text: text.value,
                                                     beam: Number(beam.querySelector("input").value)});
        result.replaceChildren(el("div", {class: "result translation"}, r.translation));
        show(r.attention);
        state("done");
      } catch (e) { fail(e); }
    });
  },

  generate(model, result, show, state, fail) {
    const prompt = el("textarea", {name: "prompt", rows: 2}, "To be");
    const tokens = number("max_new_tokens", 40, {min: 1});
    const greedy = el("input", {type: "checkbox", name: "greedy"});
    const seed = number("seed", 0, {min: 0});
    const temperature = number("temperature", 0.8, {min: 0.05, step: 0.05});
    return formOf([prompt, el("div", {class: "row"}, tokens, el("label", {}, greedy, " greedy"), temperature, seed)],
                  "Generate", async () => {
      state("running");
      const out = el("div", {class: "result generated"}, el("b", {}, prompt.value));
      result.replaceChildren(out);
      try {
        const response = await fetch("/api/generate", {method: "POST", headers: {"Content-Type": "application/json"},
          body: JSON.stringify({model: model.id, prompt: prompt.value, greedy: greedy.checked,
                                max_new_tokens: Number(tokens.querySelector("input").value),
                                temperature: Number(temperature.querySelector("input").value),
                                seed: Number(seed.querySelector("input").value)})});
        if (!response.ok) return fail(new Error(describe((await response.json()).detail)));
        const reader = response.body.getReader(), decoder = new TextDecoder();
        let buffer = "", pieces = 0;
        for (;;) {
          const {done, value} = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, {stream: true});
          let newline;
          while ((newline = buffer.indexOf("\n")) >= 0) {
            const event = JSON.parse(buffer.slice(0, newline));
            buffer = buffer.slice(newline + 1);
            if (event.error) return fail(new Error(event.error));
            if (event.text !== undefined && !event.done) {
              out.append(event.text);
              out.dataset.pieces = ++pieces;
            }
            if (event.done) {
              out.dataset.text = event.text;
              show(event.attention);
              state("done");
            }
          }
        }
      } catch (e) { fail(e); }
    });
  },

  classify(model, result, show, state, fail) {
    const file = el("input", {type: "file", name: "image", accept: "image/*"});
    const topK = number("top_k", 5, {min: 1});
    return formOf([file, el("div", {class: "row"}, topK)], "Classify", async () => {
      if (!file.files.length) return fail(new Error("choose an image first"));
      state("running");
      const body = new FormData();
      body.append("model", model.id);
      body.append("image", file.files[0]);
      body.append("top_k", topK.querySelector("input").value);
      try {
        const r = await readJSON(await fetch("/api/classify", {method: "POST", body}));
        const bars = el("div", {class: "bars"});
        for (const c of r.classes) {
          bars.append(el("div", {class: "bar"}, el("span", {class: "name"}, c.name),
                         el("span", {class: "fill", style: `width: ${Math.round(200 * c.probability)}px`}),
                         el("span", {class: "prob"}, `${(100 * c.probability).toFixed(1)}%`)));
        }
        const canvas = el("canvas", {class: "image"});
        result.replaceChildren(canvas, bars);
        show(r.attention, await drawImage(canvas, file.files[0], []));
        state("done");
      } catch (e) { fail(e); }
    });
  },

  detect(model, result, show, state, fail) {
    const file = el("input", {type: "file", name: "image", accept: "image/*"});
    const threshold = number("threshold", 0.5, {min: 0, max: 0.99, step: 0.05});
    return formOf([file, el("div", {class: "row"}, threshold)], "Detect", async () => {
      if (!file.files.length) return fail(new Error("choose an image first"));
      state("running");
      const body = new FormData();
      body.append("model", model.id);
      body.append("image", file.files[0]);
      body.append("threshold", threshold.querySelector("input").value);
      try {
        const r = await readJSON(await fetch("/api/detect", {method: "POST", body}));
        const canvas = el("canvas", {class: "image"});
        const list = el("ul", {class: "detections"});
        for (const d of r.detections) list.append(el("li", {}, `${d.name} ${(100 * d.score).toFixed(1)}% [${d.box.map(v => v.toFixed(0)).join(", ")}] (query q${d.query})`));
        result.replaceChildren(canvas, el("p", {}, `${r.detections.length} objects`), list);
        const image = await drawImage(canvas, file.files[0], r.detections);
        canvas.dataset.boxes = r.detections.length;
        show(r.attention, image, r.detections.length ? `q${r.detections[0].query}` : undefined);
        state("done");
      } catch (e) { fail(e); }
    });
  },

  embed(model, result, show, state, fail) {
    const text = el("textarea", {name: "sentences", rows: 4},
                    "The weather is lovely today.\nIt's so sunny outside!\nHe drove to the stadium.");
    const of = number("attention_of", 0, {min: 0});
    return formOf([text, el("div", {class: "row"}, of)], "Compare", async () => {
      state("running");
      const sentences = text.value.split("\n").filter(s => s.trim());
      try {
        const r = await postJSON("/api/embed", {model: model.id, sentences,
                                                 attention_of: Number(of.querySelector("input").value)});
        const table = el("table", {class: "sim"});
        table.append(el("tr", {}, el("th", {}), ...sentences.map((_, j) => el("th", {}, `${j}`))));
        r.similarity.forEach((row, i) => table.append(
          el("tr", {}, el("th", {title: sentences[i]}, `${i}: ${sentences[i]}`), ...row.map(v => el("td", {}, v.toFixed(3))))));
        result.replaceChildren(table);
        show(r.attention);
        state("done");
      } catch (e) { fail(e); }
    });
  },
};

async function drawImage(canvas, file, detections) {
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, 480 / bitmap.width) || 1;
  const grow = Math.max(1, Math.floor(256 / bitmap.width));  // small images shown bigger, pixels kept sharp
  const s = scale * grow;
  canvas.width = Math.round(bitmap.width * s);
  canvas.height = Math.round(bitmap.height * s);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = grow === 1;
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  ctx.lineWidth = 2;
  ctx.font = "12px sans-serif";
  detections.forEach((d, i) => {
    const color = `hsl(${(i * 67) % 360}, 85%, 45%)`;
    const [x0, y0, x1, y1] = d.box.map(v => v * s);
    ctx.strokeStyle = color;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.fillStyle = color;
    ctx.fillText(`${d.name} ${(100 * d.score).toFixed(0)}%`, x0 + 2, Math.max(12, y0 - 3));
  });
  return bitmap;
}

async function main() {
  const root = document.getElementById("models");
  try {
    const {models} = await readJSON(await fetch("/api/models"));
    root.replaceChildren(...models.map(panel));
    document.body.dataset.ready = "true";
  } catch (e) {
    root.replaceChildren(el("p", {class: "error"}, `could not list the models: ${e.message}`));
  }
}

main();
