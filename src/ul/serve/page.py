"""The page of `ul serve`: one HTML document, its style and script inline (nothing from a CDN, so it
works offline). Text from the server is set with textContent, never as HTML."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Unified Latents: see the bitrate</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 72em; padding: 0 1em; color: #222; }
  h1 { font-size: 1.4em; margin-bottom: .2em; }
  .lead { color: #555; margin-top: 0; }
  fieldset { border: 1px solid #ccc; border-radius: 6px; margin: 1em 0; padding: .6em 1em; }
  label { margin-right: 1em; }
  button { margin-right: .5em; }
  #message { min-height: 1.5em; margin: .5em 0; }
  #message.error { color: #a40000; font-weight: 600; }
  table { border-collapse: collapse; width: 100%; }
  th, td { border-bottom: 1px solid #ddd; padding: .4em .6em; text-align: left; vertical-align: middle; }
  td.num { font-variant-numeric: tabular-nums; text-align: right; }
  img.px { width: 128px; height: 128px; image-rendering: pixelated; background: #eee; }
  img.grid { width: 36em; max-width: 100%; image-rendering: pixelated; margin-top: .6em; }
  .note { color: #666; font-size: .9em; }
  pre { white-space: pre-wrap; background: #f6f6f6; padding: .8em; border-radius: 6px; max-height: 30em; overflow: auto; }
</style>
</head>
<body>
<h1>Unified Latents: see the bitrate</h1>
<p class="lead">Put an image through every model: its input after the model's training-time
transform, the reconstruction, the bits the latent carries (the diffusion prior's bound), and the
PSNR, ordered by bits. Nothing leaves this machine.</p>

<fieldset>
  <legend>Image</legend>
  <label>Upload <input type="file" id="file" accept="image/*"></label>
  <span id="heldout"></span>
  <label>Transparency <select id="background">
    <option value="refuse">refuse</option><option value="white">onto white</option><option value="black">onto black</option>
  </select></label>
  <label>Seed <input type="number" id="seed" value="0" min="0" style="width:6em"></label>
  <button id="redraw" disabled>Re-draw the decoder's noise</button>
</fieldset>
<div id="message" role="status"></div>
<table id="results" hidden>
  <thead><tr><th>model</th><th>input</th><th>reconstruction</th><th>bits / image</th><th>bits / pixel</th><th>PSNR (dB)</th></tr></thead>
  <tbody></tbody>
</table>
<p class="note" id="transforms"></p>

<fieldset>
  <legend>Samples and model cards</legend>
  <label>Model <select id="model"></select></label>
  <button id="sample">Draw 8 samples</button>
  <button id="card">Model card</button>
  <div id="samples"></div>
  <pre id="cardtext" hidden></pre>
</fieldset>

<script>
"use strict";
const $ = (id) => document.getElementById(id);
let upload = null, uploadName = "upload";

function say(text, error) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

async function call(url, options) {
  const r = await fetch(url, options);
  const body = (r.headers.get("content-type") || "").includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error(body.error || body || r.statusText);
  return body;
}

function cell(row, content, cls) {
  const td = row.insertCell();
  if (cls) td.className = cls;
  if (content instanceof Node) td.appendChild(content); else td.textContent = content;
  return td;
}

function picture(src, alt) {
  const img = document.createElement("img");
  img.className = "px"; img.src = src; img.alt = alt;
  return img;
}

async function run() {
  if (!upload) return;
  const seed = $("seed").value || "0";
  say("working… (seed " + seed + ")");
  const q = new URLSearchParams({seed, background: $("background").value, name: uploadName});
  try {
    const out = await call("/api/reconstruct?" + q, {method: "POST", body: upload,
                                                    headers: {"content-type": "application/octet-stream"}});
    const body = $("results").tBodies[0];
    body.replaceChildren();
    const notes = new Set();
    for (const r of out.rows) {
      const row = body.insertRow();
      row.className = "result";
      cell(row, r.model);
      if (r.error) { const td = cell(row, r.error); td.colSpan = 5; continue; }
      cell(row, picture(r.input, r.model + " input"));
      cell(row, picture(r.reconstruction, r.model + " reconstruction"));
      cell(row, r.bits_per_image.toFixed(1), "num");
      cell(row, r.bits_per_pixel.toFixed(4), "num");
      cell(row, r.psnr_db.toFixed(2), "num");
      notes.add(r.model + ": " + r.transform);
    }
    $("results").hidden = false;
    $("transforms").textContent = "Inputs: " + [...notes].join("; ") + ". Decoder: " + out.steps + " steps, seed " + out.seed + ".";
    $("redraw").disabled = false;
    say(uploadName + ": " + out.rows.length + " model(s), ordered by bits; seed " + out.seed);
  } catch (e) {
    const hint = e.message.includes("data.background") ? " (here: the Transparency menu above)" : "";
    say(e.message + hint, true);
  }
}

$("file").addEventListener("change", async () => {
  const f = $("file").files[0];
  if (!f) return;
  upload = await f.arrayBuffer(); uploadName = f.name;
  await run();
});
$("redraw").addEventListener("click", async () => {
  $("seed").value = String(Number($("seed").value || 0) + 1);
  await run();
});
$("background").addEventListener("change", run);

$("sample").addEventListener("click", async () => {
  say("sampling…");
  try {
    const out = await call("/api/sample?" + new URLSearchParams({model: $("model").value, n: 8, seed: $("seed").value || 0}),
                           {method: "POST"});
    const img = document.createElement("img");
    img.className = "grid"; img.src = out.grid; img.alt = out.model + " samples";
    $("samples").replaceChildren(img);
    say(out.model + ": 8 samples, seed " + out.seed);
  } catch (e) { say(e.message, true); }
});
$("card").addEventListener("click", async () => {
  try {
    $("cardtext").textContent = await call("/api/card?model=" + $("model").value);
    $("cardtext").hidden = false;
  } catch (e) { say(e.message, true); }
});

(async () => {
  const info = await call("/api/models");
  for (const m of info.models) {
    const o = document.createElement("option");
    o.value = m.index; o.textContent = m.model + (m.samples ? "" : " (no stage 2: no samples)");
    $("model").appendChild(o);
  }
  if (info.held_out) {
    const sel = document.createElement("select");
    sel.id = "pick";
    sel.appendChild(new Option("…or a held-out image", ""));
    for (let k = 0; k < info.held_out; k++) sel.appendChild(new Option("held-out #" + k, k));
    sel.addEventListener("change", async () => {
      if (sel.value === "") return;
      upload = await (await fetch("/api/held-out?k=" + sel.value)).arrayBuffer();
      uploadName = "held-out #" + sel.value;
      await run();
    });
    $("heldout").appendChild(sel);
  }
  say(info.models.length + " model(s) loaded; choose an image.");
})();
</script>
</body>
</html>
"""
