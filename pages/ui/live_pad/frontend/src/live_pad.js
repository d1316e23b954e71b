// The live latent pad: a Streamlit component (v1 protocol) that decodes z -> image in the browser.
//
// Python hands over the decoder as ONNX bytes (vae_core/onnx_decoder.py) and the latent vector; every
// input event of a slider, the 2-D pad or the interpolation scrubber decodes with onnxruntime-web
// (WebAssembly, one thread) and redraws the canvas. Only on release does the final vector go back to
// Python, so the server runs once per gesture instead of once per pixel of mouse travel.
import { decompress as brotliDecompress } from "brotli/decompress";
import * as ort from "onnxruntime-web/wasm";

ort.env.wasm.numThreads = 1; // threads need a cross-origin-isolated page, which an iframe here is not
ort.env.wasm.proxy = false;
ort.env.logLevel = "error";

// -- the runtime ----------------------------------------------------------------------------------
// onnxruntime-web's WebAssembly is 14 MB; Brotli makes it 2.3 MB on the wire (gzip: 3.7 MB). Streamlit
// serves a component's files as they are (no compression, no validators), so the build ships it
// compressed and the browser decodes it (brotli.js: DecompressionStream has gzip, not Brotli). It is then
// kept in this browser's IndexedDB under the runtime's version: a reload, or the next page with a pad,
// downloads none of it.
const RUNTIME_URL = new URL("./ort-wasm-simd-threaded.wasm.br", import.meta.url).href;
const RUNTIME_KEY = `ort-wasm-simd-threaded ${ort.env.versions.web}`;
const STORE = "runtime";

function openStore() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open("latent-explorer-live-pad", 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function stored(db, mode, action) {
  return new Promise((resolve, reject) => {
    const request = action(db.transaction(STORE, mode).objectStore(STORE));
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

// Behind `make serve`, a student whose worker died is moved to another worker, which serves a
// component's files only once a page with the component has run there (Streamlit registers a component
// when its Python module is imported): until the student's next move, that is a 404. So a failed
// download is tried again, for about half a minute, before the pad gives up.
const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 16000];

async function fetchRuntime() {
  for (let attempt = 0; ; attempt++) {
    let failure;
    try {
      const response = await fetch(RUNTIME_URL);
      if (response.ok) return response;
      failure = new Error(`the runtime did not load (HTTP ${response.status})`);
    } catch (error) {
      failure = error; // the connection dropped
    }
    if (attempt >= RETRY_DELAYS_MS.length) throw failure;
    stats.runtimeRetries = attempt + 1;
    await new Promise((resolve) => setTimeout(resolve, RETRY_DELAYS_MS[attempt]));
  }
}

async function runtimeBinary() {
  let db = null;
  try {
    db = await openStore();
    const kept = await stored(db, "readonly", (s) => s.get(RUNTIME_KEY));
    if (kept instanceof ArrayBuffer) {
      stats.runtimeFrom = "this browser's storage";
      return kept;
    }
  } catch {
    db = null; // no IndexedDB here (a private window, say): download it each time
  }
  const response = await fetchRuntime();
  const decoded = brotliDecompress(new Uint8Array(await response.arrayBuffer()));
  // its own ArrayBuffer, exactly the runtime's bytes (what wasmBinary and IndexedDB take)
  const binary = decoded.byteLength === decoded.buffer.byteLength ? decoded.buffer : decoded.slice().buffer;
  stats.runtimeFrom = "the server";
  if (db) {
    await stored(db, "readwrite", (s) => s.put(binary, RUNTIME_KEY)).catch(() => {}); // storage full: next time again
  }
  return binary;
}

let runtimeReady = null; // one download per page, however many models it opens
function loadRuntime() {
  runtimeReady ??= runtimeBinary().then((binary) => {
    ort.env.wasm.wasmBinary = binary;
  });
  return runtimeReady;
}

// -- the Streamlit component protocol (what streamlit-component-lib does, without React) ----------
function send(type, data) {
  window.parent.postMessage({ isStreamlitMessage: true, type, ...data }, "*");
}
const setValue = (value) => send("streamlit:setComponentValue", { value, dataType: "json" });
const setHeight = () => send("streamlit:setFrameHeight", { height: Math.ceil(document.body.scrollHeight) });

// What the bench and the browser tests read (window.livePad inside the component's iframe).
const stats = (window.livePad = {
  ready: false, // a decoder session exists and the first picture is drawn
  error: null,
  decodes: 0, // session runs for the main picture
  latencies: [], // ms from an input event to the canvas holding its picture
  frameLatencies: [], // ms from an input event to the animation frame that paints its picture
  frames: 0, // animation frames that showed a new picture
  reported: null, // the last value sent to Python
  runtimeFrom: null, // where the WebAssembly runtime came from: "the server" or "this browser's storage"
  runtimeRetries: 0, // failed downloads of the runtime before the one that worked
  endpoints: null, // the scrubber's A and B
  z: null, // the latent vector on the canvas now
});

const root = document.getElementById("root");
let args = null; // the latest render arguments
let session = null;
let modelKey = null;
let resetToken = null;
let z = null; // Float32Array: the current latent vector
let scrub = { t: 0.5, mode: "slerp" };
let ui = null; // DOM of the current model's controls
let renderChain = Promise.resolve();

window.addEventListener("message", (event) => {
  if (event.data?.type !== "streamlit:render") return;
  const { args: newArgs, theme } = event.data;
  renderChain = renderChain.then(() => render(newArgs, theme)).catch(fail);
});
new ResizeObserver(setHeight).observe(document.body);
send("streamlit:componentReady", { apiVersion: 1 });

function fail(error) {
  stats.error = String(error?.message ?? error);
  root.replaceChildren(el("p", { className: "note" }, `The live pad cannot run here: ${stats.error}`));
  setValue({ status: "unsupported", reason: stats.error });
  setHeight();
}

async function render(newArgs, theme) {
  if (typeof WebAssembly !== "object") {
    throw new Error("this browser has no WebAssembly");
  }
  applyTheme(theme);
  const modelChanged = newArgs.model_key !== modelKey;
  args = newArgs;
  if (modelChanged) {
    const previous = session;
    session = null;
    await runQueue; // a run still in flight finishes on the model it started with
    await previous?.release(); // another model picked: free the old one's WebAssembly memory
    modelKey = args.model_key;
    await loadRuntime();
    session = await ort.InferenceSession.create(args.model, { executionProviders: ["wasm"] });
    resetToken = null;
  }
  if (args.reset_token !== resetToken || !z || z.length !== args.latent_dim) {
    resetToken = args.reset_token;
    z = Float32Array.from(args.z);
    if (args.scrubber) scrub = { t: args.scrubber.t, mode: args.scrubber.mode };
  } // otherwise the student's z stays; the label, endpoints or sections may still have changed
  build();
  await request();
  await drawPadBackdrop();
  stats.ready = true;
  setHeight();
}

// -- decoding -----------------------------------------------------------------------------------
function feeds(vectors, n) {
  const f = { z: new ort.Tensor("float32", vectors, [n, args.latent_dim]) };
  if (args.num_classes > 0) {
    const y = new Float32Array(n * args.num_classes);
    for (let i = 0; i < n; i++) y[i * args.num_classes + args.label] = 1;
    f.y = new ort.Tensor("float32", y, [n, args.num_classes]);
  }
  return f;
}

// One run at a time on the session: the pad's backdrop and the main picture take turns.
let runQueue = Promise.resolve();
function run(inputs) {
  const result = runQueue.then(() => session.run(inputs));
  runQueue = result.catch(() => {});
  return result;
}

let busy = false;
let pending = null; // { vector, inputTimes }: the newest z to draw, and the input events it answers

function request(eventTime) {
  const inputTimes = pending ? pending.inputTimes : [];
  if (eventTime !== undefined) inputTimes.push(eventTime);
  pending = { vector: Float32Array.from(z), inputTimes };
  return busy ? Promise.resolve() : drain();
}

async function drain() {
  busy = true;
  try {
    // Events that arrive during a run are folded into the next one: the picture is never more than
    // one decode behind, however fast the pointer moves.
    while (pending) {
      const { vector, inputTimes } = pending;
      pending = null;
      const out = await run(feeds(vector, 1));
      paint(ui.context, ui.pixels, out.image.data, 0);
      stats.decodes += 1;
      stats.z = Array.from(vector);
      const drawn = performance.now();
      for (const t of inputTimes) stats.latencies.push(drawn - t);
      // ...and to the animation frame that paints it (its callbacks run just before style, layout, paint)
      requestAnimationFrame(() => {
        const now = performance.now();
        for (const t of inputTimes) stats.frameLatencies.push(now - t);
      });
      for (const list of [stats.latencies, stats.frameLatencies]) if (list.length > 20000) list.splice(0, 10000);
      newPicture = true;
    }
  } finally {
    busy = false;
  }
}

let newPicture = false;
(function countFrames() {
  if (newPicture) stats.frames += 1;
  newPicture = false;
  requestAnimationFrame(countFrames);
})();

function paint(context, pixels, data, index) {
  // data: (N, C, H, W) floats in [0, 1]; draws picture `index` (pixels: an H x W ImageData)
  toRGBA(data, index * args.shape.reduce((p, q) => p * q), pixels.data);
  context.putImageData(pixels, 0, 0);
}

function toRGBA(data, offset, out) {
  // One (C, H, W) picture at data[offset...] as opaque RGBA bytes, rounded as vae_core/images.py does.
  const [channels, height, width] = args.shape;
  const plane = height * width;
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const v = data[offset + (channels === 3 ? c : 0) * plane + i];
      out[4 * i + c] = Math.round(Math.min(1, Math.max(0, v)) * 255);
    }
    out[4 * i + 3] = 255;
  }
}

// The pad's backdrop: the plane it spans, decoded on a coarse grid, so the student sees where to go.
const BACKDROP_STEPS = 7; // tiles per side: few enough that an 8 x 8 digit still reads as one
const BACKDROP_GAP = 1; // pixels between tiles

async function drawPadBackdrop() {
  if (!ui.pad) return;
  const [dx, dy] = ui.axes;
  const n = BACKDROP_STEPS * BACKDROP_STEPS;
  const vectors = new Float32Array(n * args.latent_dim);
  for (let row = 0; row < BACKDROP_STEPS; row++) {
    for (let col = 0; col < BACKDROP_STEPS; col++) {
      const i = row * BACKDROP_STEPS + col;
      vectors.set(z, i * args.latent_dim);
      // each tile shows the decode at its centre, where the dot would sit for that value
      vectors[i * args.latent_dim + dx] = args.range * (2 * (col + 0.5) / BACKDROP_STEPS - 1);
      vectors[i * args.latent_dim + dy] = args.range * (1 - 2 * (row + 0.5) / BACKDROP_STEPS);
    }
  }
  const out = await run(feeds(vectors, n));
  const [, height, width] = args.shape;
  const cells = ui.backdrop.getContext("2d");
  const pixels = cells.createImageData(width, height);
  const data = pixels.data;
  const plane = height * width;
  for (let i = 0; i < n; i++) {
    toRGBA(out.image.data, i * args.shape[0] * plane, data);
    cells.putImageData(pixels, (i % BACKDROP_STEPS) * (width + BACKDROP_GAP),
      Math.floor(i / BACKDROP_STEPS) * (height + BACKDROP_GAP));
  }
}

// -- interpolation (as vae_core/latent.py: lerp, and slerp with Kahan's angle) -------------------
function norm(v) {
  let s = 0;
  for (const x of v) s += x * x;
  return Math.sqrt(s);
}

function interpolate(a, b, t, mode) {
  const out = new Float32Array(a.length);
  const na = norm(a), nb = norm(b);
  let omega = NaN;
  if (mode === "slerp" && na >= 1e-7 && nb >= 1e-7) {
    let sub = 0, add = 0;
    for (let i = 0; i < a.length; i++) {
      sub += (a[i] / na - b[i] / nb) ** 2;
      add += (a[i] / na + b[i] / nb) ** 2;
    }
    omega = 2 * Math.atan2(Math.sqrt(sub), Math.sqrt(add));
  }
  if (!(omega >= 1e-4 && Math.PI - omega >= 1e-4)) { // lerp, or slerp where the great circle is undefined
    for (let i = 0; i < a.length; i++) out[i] = (1 - t) * a[i] + t * b[i];
  } else {
    const so = Math.sin(omega), wa = Math.sin((1 - t) * omega) / so, wb = Math.sin(t * omega) / so;
    const radius = (1 - t) * na + t * nb;
    for (let i = 0; i < a.length; i++) out[i] = (wa * a[i] / na + wb * b[i] / nb) * radius;
  }
  if (t <= 0) out.set(a);
  if (t >= 1) out.set(b);
  return out;
}

// -- the controls -------------------------------------------------------------------------------
function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// Names this iframe's reports: Python applies each one once, and a report from an earlier visit of
// the page (another iframe, counting from 1 again) is never mistaken for the current one.
const reportPrefix = Math.random().toString(36).slice(2);
let reports = 0;

function report(source) {
  reports += 1;
  const value = { status: "ok", source, z: Array.from(z), id: `${reportPrefix}-${reports}` };
  if (args.scrubber) Object.assign(value, { t: scrub.t, mode: scrub.mode });
  stats.reported = value;
  setValue(value);
}

function build() {
  const [, height, width] = args.shape;
  const canvas = el("canvas", { width, height, className: "picture" });
  canvas.style.width = `${args.image_px}px`;
  canvas.style.height = `${Math.round(args.image_px * height / width)}px`;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  ui = { canvas, context, pixels: context.createImageData(width, height), sliders: new Map(), pad: null };
  const view = el("figure", { className: "view" }, canvas,
    el("figcaption", {}, "decode(z) · drawn by your browser"));
  // The picture, then the pad or the scrubber beside it, then the sliders on a row of their own.
  const parts = [view];
  if (args.sections.includes("pad")) parts.push(buildPad());
  if (args.scrubber) parts.push(buildScrubber());
  if (args.sections.includes("sliders")) parts.push(buildSliders());
  root.replaceChildren(el("div", { className: "live-pad" }, ...parts));
}

function fmt(v) {
  return (v >= 0 ? "+" : "−") + Math.abs(v).toFixed(2);
}

function buildSliders() {
  const box = el("div", { className: "sliders" });
  args.order.forEach((d) => {
    const dead = args.dead.includes(d);
    const value = el("output", {}, fmt(z[d]));
    const input = el("input", {
      type: "range", min: -args.range, max: args.range, step: 0.01, value: z[d],
      ariaLabel: `z${d}`,
    });
    input.dataset.dim = d;
    input.addEventListener("input", (event) => {
      z[d] = Number(input.value);
      value.textContent = fmt(z[d]);
      movePadDot();
      request(event.timeStamp);
    });
    input.addEventListener("change", () => {
      drawPadBackdrop().catch(fail);
      report("slider");
    });
    ui.sliders.set(d, { input, value });
    box.append(el("label", { className: dead ? "slider dead" : "slider" },
      el("span", { className: "name" }, `z${d}`, el("small", {}, ` ${args.kl_name} ${args.kl[d].toFixed(2)}${dead ? " · inactive" : ""}`)),
      input, value));
  });
  return box;
}

function syncSlider(d) {
  const slider = ui.sliders.get(d);
  if (!slider) return;
  slider.input.value = z[d];
  slider.value.textContent = fmt(z[d]);
}

function buildPad() {
  const dims = args.order;
  ui.axes = [...args.pad_axes];
  const [, height, width] = args.shape;
  const backdrop = el("canvas", {
    width: BACKDROP_STEPS * (width + BACKDROP_GAP) - BACKDROP_GAP,
    height: BACKDROP_STEPS * (height + BACKDROP_GAP) - BACKDROP_GAP,
    className: "backdrop",
  });
  const dot = el("div", { className: "dot" });
  const pad = el("div", { className: "pad", ariaLabel: "2-D latent pad", role: "application" }, backdrop, dot);
  const axisSelect = (axis) => {
    const select = el("select", { ariaLabel: axis === 0 ? "pad x axis" : "pad y axis" },
      ...dims.map((d) => el("option", { value: d, selected: d === ui.axes[axis] }, `z${d}`)));
    select.addEventListener("change", () => {
      ui.axes[axis] = Number(select.value);
      movePadDot();
      drawPadBackdrop().catch(fail);
    });
    return select;
  };
  Object.assign(ui, { pad, dot, backdrop });
  const place = (event) => {
    const box = pad.getBoundingClientRect();
    const fx = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
    const fy = Math.min(1, Math.max(0, (event.clientY - box.top) / box.height));
    z[ui.axes[0]] = Math.round(args.range * (2 * fx - 1) * 100) / 100;
    z[ui.axes[1]] = Math.round(args.range * (1 - 2 * fy) * 100) / 100;
    syncSlider(ui.axes[0]);
    syncSlider(ui.axes[1]);
    movePadDot();
    request(event.timeStamp);
  };
  pad.addEventListener("pointerdown", (event) => {
    pad.setPointerCapture(event.pointerId);
    place(event);
  });
  pad.addEventListener("pointermove", (event) => {
    if (pad.hasPointerCapture(event.pointerId)) place(event);
  });
  pad.addEventListener("pointerup", () => report("pad"));
  queueMicrotask(movePadDot);
  return el("div", { className: "pad-box" },
    el("div", { className: "axes" }, "x ", axisSelect(0), " y ", axisSelect(1)), pad);
}

function movePadDot() {
  if (!ui.pad) return;
  const [dx, dy] = ui.axes;
  const fx = (z[dx] / args.range + 1) / 2, fy = (1 - z[dy] / args.range) / 2;
  ui.dot.style.left = `${Math.min(1, Math.max(0, fx)) * 100}%`;
  ui.dot.style.top = `${Math.min(1, Math.max(0, fy)) * 100}%`;
}

function buildScrubber() {
  const { a, b } = args.scrubber;
  stats.endpoints = { a, b };
  const from = Float32Array.from(a), to = Float32Array.from(b);
  const value = el("output", {}, `t = ${scrub.t.toFixed(3)}`);
  const input = el("input", { type: "range", min: 0, max: 1, step: 0.001, value: scrub.t, ariaLabel: "t" });
  const update = (eventTime) => {
    scrub.t = Number(input.value);
    z.set(interpolate(from, to, scrub.t, scrub.mode));
    value.textContent = `t = ${scrub.t.toFixed(3)}`;
    request(eventTime);
  };
  input.addEventListener("input", (event) => update(event.timeStamp));
  input.addEventListener("change", () => report("scrubber"));
  const modes = ["slerp", "lerp"].map((mode) => {
    const radio = el("input", { type: "radio", name: "mode", value: mode, checked: mode === scrub.mode });
    radio.addEventListener("change", (event) => {
      scrub.mode = mode;
      update(event.timeStamp);
      report("scrubber");
    });
    return el("label", { className: "mode" }, radio, ` ${mode}`);
  });
  z.set(interpolate(from, to, scrub.t, scrub.mode));
  return el("div", { className: "scrubber" },
    el("div", { className: "modes" }, ...modes),
    el("label", { className: "slider" }, el("span", { className: "name" }, "A"), input, el("span", { className: "name" }, "B")),
    value);
}

function applyTheme(theme) {
  if (!theme) return;
  const style = document.documentElement.style;
  style.setProperty("--primary", theme.primaryColor);
  style.setProperty("--background", theme.backgroundColor);
  style.setProperty("--panel", theme.secondaryBackgroundColor);
  style.setProperty("--text", theme.textColor);
  style.setProperty("--font", theme.font);
}
