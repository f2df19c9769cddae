// pixelrnn's page: draw or pick an image, keep its top rows, and watch the model complete it.
// Plain JavaScript, no libraries and nothing fetched from the internet. window.pixelrnn holds
// the page's state (the browser tests read it).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], info: null, values: [], lastResult: null, job: null, source: null, likelihood: null, field: null,
                predictions: null };
window.pixelrnn = state;

function say(text) { $("message").textContent = text || ""; }
function status(text) { $("status").textContent = text; }

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}
const postJSON = (path, body) => api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

function scale() { return Math.max(1, Math.floor(256 / state.info.height)); }

function draw() {
  const { channels, height, width, levels } = state.info;
  const canvas = $("canvas"), s = scale(), ctx = canvas.getContext("2d");
  canvas.width = width * s; canvas.height = height * s;
  const known = Number($("known-rows").value);
  for (let i = 0; i < height; i++) {
    for (let j = 0; j < width; j++) {
      const v = (c) => Math.round(state.values[(c * height + i) * width + j] * 255 / (levels - 1));
      const [r, g, b] = channels === 1 ? [v(0), v(0), v(0)] : [v(0), v(1), v(2)];
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      ctx.fillRect(j * s, i * s, s, s);
    }
  }
  ctx.fillStyle = "rgba(128,128,128,0.75)";  // the rows the model will draw
  ctx.fillRect(0, known * s, width * s, (height - known) * s);
  ctx.strokeStyle = "#e53935"; ctx.lineWidth = 2;
  ctx.beginPath(); ctx.moveTo(0, known * s); ctx.lineTo(width * s, known * s); ctx.stroke();
}

function penLevels() {
  const hex = $("pen").value, { channels, levels } = state.info;
  const rgb = [1, 3, 5].map((k) => parseInt(hex.slice(k, k + 2), 16));
  const grey = Math.round(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]);
  return (channels === 1 ? [grey] : rgb).map((x) => Math.floor(x * levels / 256));
}

function paint(event) {
  const { channels, height, width } = state.info, rect = $("canvas").getBoundingClientRect();
  const j0 = Math.floor((event.clientX - rect.left) / rect.width * width);
  const i0 = Math.floor((event.clientY - rect.top) / rect.height * height);
  const brush = Number($("brush").value), pen = penLevels();
  for (let i = i0 - brush + 1; i < i0 + brush; i++) {
    for (let j = j0 - brush + 1; j < j0 + brush; j++) {
      if (i < 0 || j < 0 || i >= height || j >= width) continue;
      for (let c = 0; c < channels; c++) state.values[(c * height + i) * width + j] = pen[c];
    }
  }
  draw();
}

function setImage(values) { state.values = values.slice(); draw(); }

async function chooseModel(name) {
  state.info = state.models.find((m) => m.name === name);
  const { height, channels, levels, classes } = state.info;
  const figure = state.info.valid_bits_per_dim == null ? "" :
    levels === 2 ? `, valid ${state.info.valid_nll_nats.toFixed(2)} nats` : `, valid ${state.info.valid_bits_per_dim.toFixed(2)} bits/dim`;
  $("model-info").textContent = `${state.info.architecture}, ${channels}x${height}x${state.info.width}, ${levels} levels` +
    (state.info.dataset ? `, ${state.info.dataset}` : "") + figure;
  $("known-rows").max = height;
  $("known-rows").value = Math.floor(height / 2);
  $("known-rows-value").textContent = $("known-rows").value;
  $("label-row").hidden = classes.length === 0;
  $("label").innerHTML = "";
  const any = new Option("any class: p(x)", ""); $("label").add(any);
  classes.forEach((c, k) => $("label").add(new Option(c, k)));
  setImage(new Array(channels * height * state.info.width).fill(0));
  ["result", "heatmap", "field"].forEach((id) => $(id).removeAttribute("src")); $("nll").textContent = "";
  state.field = null; state.predictions = null;
  $("predictions").hidden = true; $("predictions-info").textContent = "";
  say("");
  const examples = await api(`/api/models/${encodeURIComponent(name)}/examples?count=12`);
  $("examples").innerHTML = ""; $("examples-note").textContent = examples.note ? `(${examples.note})` : "";
  examples.images.forEach((values) => {
    const img = document.createElement("img");
    img.src = thumbnail(values); img.title = "use this image";
    img.addEventListener("click", () => { setImage(values); say(""); });
    $("examples").appendChild(img);
  });
}

function thumbnail(values) {
  const { channels, height, width, levels } = state.info, canvas = document.createElement("canvas");
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d"), data = ctx.createImageData(width, height);
  for (let p = 0; p < height * width; p++) {
    for (let c = 0; c < 3; c++) data.data[4 * p + c] = Math.round(values[(channels === 1 ? 0 : c) * height * width + p] * 255 / (levels - 1));
    data.data[4 * p + 3] = 255;
  }
  ctx.putImageData(data, 0, 0);
  return canvas.toDataURL();
}

function label() { return $("label").value === "" ? null : Number($("label").value); }

function busy(running) {
  ["complete", "sample", "surprise"].forEach((id) => { $(id).disabled = running; });
  $("cancel").disabled = !running;
}

async function run(task) {
  say("");
  const seed = $("seed").value === "" ? null : Number($("seed").value);
  const request = { model: state.info.name, task, count: Number($("count").value), seed, label: label(),
                    temperature: Number($("temperature").value), known_rows: Number($("known-rows").value) };
  if (task === "complete") request.values = state.values;
  let job;
  try { job = (await postJSON("/api/jobs", request)).job; } catch (error) { say(error.message); return; }
  state.job = job; busy(true); status(task === "complete" ? "completing..." : "sampling...");
  const source = new EventSource(`/api/jobs/${job}/events`);
  state.source = source;
  const finish = (text) => { source.close(); state.source = null; state.job = null; busy(false); status(text); };
  source.addEventListener("progress", (e) => {
    const event = JSON.parse(e.data);
    $("result").src = event.picture; status(`row ${event.row} / ${event.rows}`);
  });
  source.addEventListener("done", (e) => {
    const event = JSON.parse(e.data);
    state.lastResult = { task, request, values: event.values };
    $("result").src = event.picture; finish("done");
  });
  source.addEventListener("cancelled", () => finish("cancelled"));
  source.addEventListener("error", (e) => {
    if (e.data) say(JSON.parse(e.data).error);
    else if (source.readyState === EventSource.CLOSED) say("the connection to the server was lost");
    else return;  // the browser reconnects by itself
    finish("failed");
  });
}

async function cancel() {
  if (!state.job) return;
  const job = state.job;
  state.source && state.source.close();
  state.job = null; busy(false); status("cancelled");
  try { await api(`/api/jobs/${job}`, { method: "DELETE" }); } catch (error) { say(error.message); }
}

async function surprise() {
  say("");
  try {
    const result = await postJSON("/api/likelihood", { model: state.info.name, values: state.values, label: label() });
    state.likelihood = result;
    $("heatmap").src = result.heatmap;
    const unit = state.info.levels === 2 ? "" : `, ${result.bits_per_dim.toFixed(3)} bits/dim`;
    $("nll").textContent = `-log p(x) = ${result.nll_nats.toFixed(2)} nats${unit}; brightest pixel ${result.max_pixel_nats.toFixed(2)} nats`;
  } catch (error) { say(error.message); }
}

async function field(event) {
  if (!event.target.getAttribute("src")) return;  // no surprise map (or field) drawn yet
  const { height, width } = state.info, rect = event.target.getBoundingClientRect();
  const row = Math.min(height - 1, Math.floor((event.clientY - rect.top) / rect.height * height));
  const column = Math.min(width - 1, Math.floor((event.clientX - rect.left) / rect.width * width));
  const request = { model: state.info.name, values: state.values, label: label(), row, column };
  say("");
  // Each answer on its own: one that fails leaves the other drawn, its error on the message line.
  const [fieldAnswer, predictedAnswer] = await Promise.allSettled(
    [postJSON("/api/receptive-field", request), postJSON("/api/predictions", request)]);
  if (fieldAnswer.status === "fulfilled") {
    const result = fieldAnswer.value;
    state.field = result;
    $("field").src = result.picture;
    $("field-info").textContent = `pixel (${row}, ${column}): its prediction moves with ${result.seen} of the ` +
      `${result.earlier} pixels before it in this image (blue, darker: more; amber: not at all; red: the pixel)`;
  } else say(fieldAnswer.reason.message);
  if (predictedAnswer.status === "fulfilled") {
    state.predictions = predictedAnswer.value;
    drawPredictions(predictedAnswer.value);
  } else say(predictedAnswer.reason.message);
}

// p(value | the values before it) for each channel of the pixel, one bar per level; the value in the image in black.
function drawPredictions(predicted) {
  const canvas = $("predictions"), ctx = canvas.getContext("2d"), n = predicted.channels.length;
  const levels = predicted.levels, band = 60, barWidth = Math.max(1, Math.floor(256 / levels));
  const colours = n === 1 ? ["#555"] : ["#d32f2f", "#388e3c", "#1976d2"];
  canvas.width = levels * barWidth + 20; canvas.height = n * (band + 16);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  predicted.channels.forEach((channel, c) => {
    const top = c * (band + 16) + 4, peak = Math.max(...channel.probs);
    ctx.fillStyle = colours[c];
    channel.probs.forEach((p, v) => {
      const h = peak > 0 ? Math.round(p / peak * band) : 0;
      ctx.fillRect(10 + v * barWidth, top + band - h, Math.max(1, barWidth - (levels <= 16 ? 2 : 0)), h);
    });
    ctx.fillStyle = "#000";
    ctx.fillRect(10 + channel.value * barWidth + Math.floor(barWidth / 2), top, 1, band + 4);
    ctx.fillStyle = "#bbb"; ctx.fillRect(10, top + band, levels * barWidth, 1);
  });
  canvas.hidden = false;
  const names = n === 1 ? [""] : ["R ", "G ", "B "];
  $("predictions-info").textContent = "p(value | the values before it), each channel scaled to its peak; black: the image's value (" +
    predicted.channels.map((ch, c) => `${names[c]}${ch.value}: ${(100 * ch.probs[ch.value]).toFixed(1)}%`).join(", ") + ")";
}

async function upload(file) {
  say("");
  try {
    const body = await file.arrayBuffer();
    const result = await api(`/api/models/${encodeURIComponent(state.info.name)}/decode`, { method: "POST", body });
    setImage(result.values);
  } catch (error) { say(`${file.name}: ${error.message}`); }
}

async function start() {
  try { state.models = await api("/api/models"); } catch (error) { say(error.message); return; }
  state.models.forEach((m) => $("model").add(new Option(m.name, m.name)));
  $("model").addEventListener("change", () => chooseModel($("model").value));
  let drawing = false;
  $("canvas").addEventListener("pointerdown", (e) => { drawing = true; paint(e); });
  $("canvas").addEventListener("pointermove", (e) => { if (drawing) paint(e); });
  window.addEventListener("pointerup", () => { drawing = false; });
  $("clear").addEventListener("click", () => setImage(state.values.map(() => 0)));
  $("known-rows").addEventListener("input", () => { $("known-rows-value").textContent = $("known-rows").value; draw(); });
  $("temperature").addEventListener("input", () => { $("temperature-value").textContent = Number($("temperature").value).toFixed(2); });
  $("upload").addEventListener("change", (e) => { if (e.target.files[0]) upload(e.target.files[0]); e.target.value = ""; });
  $("complete").addEventListener("click", () => run("complete"));
  $("sample").addEventListener("click", () => run("sample"));
  $("cancel").addEventListener("click", cancel);
  $("surprise").addEventListener("click", surprise);
  $("heatmap").addEventListener("click", field);
  $("field").addEventListener("click", field);
  await chooseModel(state.models[0].name);
  document.body.dataset.ready = "true";
}

start();
