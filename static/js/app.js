/* medrlhf page behaviour: the rating viewer (window/level on the image's real
   values), preloading, the physician's keys and timing.
   Loaded from our own static files; the Content-Security-Policy forbids inline script. */
(function () {
  "use strict";

  var MIN_ZOOM = 0.5;
  var MAX_ZOOM = 12;
  var view = { zoom: 1, x: 0, y: 0 };
  // How the next image opens: "auto" (from its histogram) or a preset's key.
  // A CT preset and invert stay as the physician chose them from image to image.
  var windowMode = "auto";
  var inverted = false;
  var shownAt = null;
  var current = null; // { canvas, decoded, center, width, uid }
  var predicted = null; // { uid, at } when the next image was shown before the server answered
  var selectedScore = null;
  // Keys act only once htmx has finished swapping in and wiring up the panel.
  var ready = false;
  var decodedBySrc = new Map();

  function setReady(value) {
    ready = value;
    document.documentElement.dataset.raterReady = value ? "1" : "0";
  }

  // ---- PNG decoding: 8/16-bit grayscale and RGB, every filter type ---------

  function inflate(bytes) {
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer().then(function (buf) { return new Uint8Array(buf); });
  }

  function paeth(a, b, c) {
    var p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
    if (pa <= pb && pa <= pc) { return a; }
    return pb <= pc ? b : c;
  }

  function decodePng(buffer) {
    var bytes = new Uint8Array(buffer);
    var dv = new DataView(buffer);
    var sig = [137, 80, 78, 71, 13, 10, 26, 10];
    for (var i = 0; i < 8; i++) { if (bytes[i] !== sig[i]) { return Promise.reject(new Error("not a PNG")); } }
    var pos = 8, width = 0, height = 0, depth = 0, colourType = 0, parts = [], total = 0;
    while (pos + 8 <= bytes.length) {
      var len = dv.getUint32(pos);
      var type = String.fromCharCode(bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]);
      var start = pos + 8;
      if (type === "IHDR") {
        width = dv.getUint32(start); height = dv.getUint32(start + 4);
        depth = bytes[start + 8]; colourType = bytes[start + 9];
        if (bytes[start + 12] !== 0) { return Promise.reject(new Error("interlaced PNG")); }
      } else if (type === "IDAT") {
        parts.push(bytes.subarray(start, start + len)); total += len;
      } else if (type === "IEND") { break; }
      pos = start + len + 4;
    }
    var channels = { 0: 1, 2: 3 }[colourType];
    if (!channels || (depth !== 8 && depth !== 16)) { return Promise.reject(new Error("unsupported PNG")); }
    var idat = new Uint8Array(total), at = 0;
    parts.forEach(function (p) { idat.set(p, at); at += p.length; });
    return inflate(idat).then(function (raw) {
      var bpp = channels * depth / 8, stride = width * bpp;
      var out = new Uint8Array(stride * height), prev = new Uint8Array(stride);
      for (var y = 0; y < height; y++) {
        var f = raw[y * (stride + 1)], src = y * (stride + 1) + 1, row = out.subarray(y * stride, (y + 1) * stride);
        for (var x = 0; x < stride; x++) {
          var a = x >= bpp ? row[x - bpp] : 0, b = prev[x], c = x >= bpp ? prev[x - bpp] : 0, v = raw[src + x];
          if (f === 1) { v += a; } else if (f === 2) { v += b; } else if (f === 3) { v += (a + b) >> 1; } else if (f === 4) { v += paeth(a, b, c); }
          row[x] = v & 255;
        }
        prev = row;
      }
      var n = width * height * channels, samples = new Float32Array(n);
      if (depth === 16) {
        for (var k = 0; k < n; k++) { samples[k] = (out[2 * k] << 8) | out[2 * k + 1]; }
      } else {
        for (var m = 0; m < n; m++) { samples[m] = out[m]; }
      }
      return { width: width, height: height, channels: channels, samples: samples };
    });
  }

  // The image's values in its own units (HU for CT): offset + step x pixel.
  function load(src, offset, step) {
    if (!decodedBySrc.has(src)) {
      var promise = fetch(src, { credentials: "same-origin" })
        .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.arrayBuffer(); })
        .then(decodePng)
        .then(function (img) {
          var values = img.samples, lo = Infinity, hi = -Infinity;
          for (var i = 0; i < values.length; i++) {
            var v = offset + step * values[i]; values[i] = v;
            if (v < lo) { lo = v; } if (v > hi) { hi = v; }
          }
          img.min = lo; img.max = hi;
          // Colour images open with their true colours: the full 8-bit range.
          img.auto = img.channels === 3 ? { center: offset + step * 127.5, width: step * 255 } : autoWindow(img);
          img.ready = true;
          return img;
        });
      promise.catch(function () { decodedBySrc.delete(src); });
      decodedBySrc.set(src, promise);
      // Keep the cache small: the current, the next and a few behind.
      if (decodedBySrc.size > 8) { decodedBySrc.delete(decodedBySrc.keys().next().value); }
    }
    return decodedBySrc.get(src);
  }

  // Automatic window from the histogram: the 0.5th to 99.5th percentile
  // (grayscale images; colour ones open at their full range).
  function autoWindow(img) {
    var sorted = Float32Array.from(img.samples).sort();
    var lo = sorted[Math.floor(0.005 * (sorted.length - 1))];
    var hi = sorted[Math.ceil(0.995 * (sorted.length - 1))];
    if (hi <= lo) { lo = img.min; hi = img.max; }
    var width = Math.max(hi - lo, (img.max - img.min) * 1e-3, 1e-6);
    return { center: (lo + hi) / 2, width: width };
  }

  // ---- drawing -------------------------------------------------------------

  function draw(canvas, img, center, width, invert) {
    canvas.width = img.width;
    canvas.height = img.height;
    var ctx = canvas.getContext("2d", { willReadFrequently: true });
    var data = ctx.createImageData(img.width, img.height), px = data.data;
    var low = center - width / 2, scale = 255 / width, s = img.samples, ch = img.channels;
    for (var i = 0, n = img.width * img.height; i < n; i++) {
      for (var c = 0; c < 3; c++) {
        var v = (s[ch === 3 ? 3 * i + c : i] - low) * scale;
        v = v < 0 ? 0 : v > 255 ? 255 : v;
        px[4 * i + c] = Math.round(invert ? 255 - v : v);
      }
      px[4 * i + 3] = 255;
    }
    ctx.putImageData(data, 0, 0);
  }

  function fmt(v) { return Math.abs(v) >= 10 ? String(Math.round(v)) : v.toPrecision(3); }

  function render() {
    if (!current || !current.decoded) { return; }
    draw(current.canvas, current.decoded, current.center, current.width, inverted);
    current.canvas.dataset.shownUid = current.uid;
    current.canvas.dataset.center = String(current.center);
    current.canvas.dataset.width = String(current.width);
    document.documentElement.dataset.shownUid = current.uid;
    showReadout();
    syncControls();
  }

  // The current window/level (in the image's units) and zoom, on screen.
  function showReadout() {
    var readout = document.querySelector("[data-readout]");
    if (!readout || !current || !current.decoded) { return; }
    var unit = current.canvas.dataset.unit ? " " + current.canvas.dataset.unit : "";
    readout.textContent = "W " + fmt(current.width) + " L " + fmt(current.center) + unit +
      " · " + view.zoom.toFixed(1) + "×" + (inverted ? " · inverted" : "");
  }

  function syncControls() {
    // A flat image still gets usable sliders.
    var img = current.decoded, span = Math.max(img.max - img.min, Math.abs(img.max) * 1e-3, 1e-3);
    document.querySelectorAll("[data-wl]").forEach(function (input) {
      var isWidth = input.dataset.wl === "width";
      input.min = isWidth ? String(span / 1000) : String(img.min - span / 2);
      input.max = isWidth ? String(span * 2) : String(img.max + span / 2);
      input.step = String(span / 1000);
      input.value = String(isWidth ? current.width : current.center);
    });
    document.querySelectorAll("[data-invert]").forEach(function (b) { b.setAttribute("aria-pressed", inverted ? "true" : "false"); });
    document.querySelectorAll("[data-window]").forEach(function (b) {
      b.classList.toggle("is-active", b.dataset.window === windowMode);
    });
  }

  function presetButton(key) { return document.querySelector("[data-window='" + key + "']"); }

  function setWindow(mode) {
    if (!current || !current.decoded) { return; }
    var button = mode === "auto" ? null : presetButton(mode);
    if (mode !== "auto" && !button) { return; } // no such preset for this modality
    windowMode = mode;
    if (button) {
      current.center = Number(button.dataset.center);
      current.width = Number(button.dataset.width);
    } else {
      current.center = current.decoded.auto.center;
      current.width = current.decoded.auto.width;
    }
    render();
  }

  function applyView() {
    var canvas = current && current.canvas;
    if (!canvas) { return; }
    canvas.style.transform = "translate(" + view.x + "px, " + view.y + "px) scale(" + view.zoom + ")";
    showReadout();
  }

  function zoomBy(factor, cx, cy) {
    var next = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, view.zoom * factor));
    var applied = next / view.zoom;
    // Keep the point under the cursor still while zooming.
    view.x = cx - (cx - view.x) * applied;
    view.y = cy - (cy - view.y) * applied;
    view.zoom = next;
    applyView();
  }

  function fit() { view = { zoom: 1, x: 0, y: 0 }; applyView(); }

  function reset() {
    inverted = false;
    view = { zoom: 1, x: 0, y: 0 };
    applyView();
    setWindow("auto");
  }

  function showStatus(text) {
    var status = document.querySelector("[data-viewer-status]");
    if (!status) { return; }
    status.hidden = !text;
    status.textContent = text || "";
  }

  function show(canvas, decoded) {
    current.decoded = decoded;
    var preset = windowMode !== "auto" ? presetButton(windowMode) : null;
    if (preset) {
      current.center = Number(preset.dataset.center);
      current.width = Number(preset.dataset.width);
    } else {
      if (windowMode !== "auto") { windowMode = "auto"; }
      current.center = decoded.auto.center;
      current.width = decoded.auto.width;
    }
    showStatus("");
    render();
    if (shownAt === null) { shownAt = performance.now(); }
  }

  function startImage() {
    var canvas = document.querySelector("[data-image]");
    selectedScore = null;
    setReady(true);
    if (!canvas) { current = null; predicted = null; return; }
    if (current && current.canvas === canvas) { return; }
    var uid = canvas.dataset.uid;
    // The clock of an image shown before the server answered started then.
    shownAt = predicted && predicted.uid === uid ? predicted.at : null;
    predicted = null;
    view = { zoom: 1, x: 0, y: 0 };
    current = { canvas: canvas, decoded: null, center: 0, width: 1, uid: uid };
    canvas.style.transform = "";
    var promise = load(canvas.dataset.src, Number(canvas.dataset.offset), Number(canvas.dataset.step));
    showStatus("Loading…");
    promise.then(function (decoded) {
      if (current && current.canvas === canvas) { show(canvas, decoded); }
    }, function () {
      if (current && current.canvas === canvas) { showStatus("This image could not be loaded. Reload the page."); }
    });
    preloadNext();
  }

  function preloadNext() {
    var form = document.getElementById("rate-form");
    if (form && form.dataset.nextSrc) {
      var uid = form.dataset.nextUid;
      load(form.dataset.nextSrc, Number(form.dataset.nextOffset), Number(form.dataset.nextStep)).then(function () {
        document.documentElement.dataset.nextReady = uid;
      }, function () {});
    }
  }

  // Show the preloaded next image the moment a score is given; the server's
  // answer then swaps in the same image (or, after an error, the truth).
  function showNextNow() {
    var form = document.getElementById("rate-form");
    if (!form || !form.dataset.nextSrc || !current) { return; }
    var promise = decodedBySrc.get(form.dataset.nextSrc);
    if (!promise) { return; }
    promise.then(function (decoded) {
      if (!current || current.uid === form.dataset.nextUid || !form.isConnected) { return; }
      var prompt = document.querySelector("[data-testid='prompt']");
      var modality = document.querySelector("[data-testid='modality']");
      predicted = {
        uid: form.dataset.nextUid, at: performance.now(), canvas: current.canvas,
        back: { uid: current.uid, decoded: current.decoded, unit: current.canvas.dataset.unit,
                prompt: prompt ? prompt.textContent : "", modality: modality ? modality.textContent : "",
                shownAt: shownAt }
      };
      current.uid = form.dataset.nextUid;
      current.canvas.dataset.unit = form.dataset.nextUnit || "";
      view = { zoom: 1, x: 0, y: 0 };
      current.canvas.style.transform = "";
      if (prompt) { prompt.textContent = form.dataset.nextPrompt || ""; }
      if (modality) { modality.textContent = form.dataset.nextModality || ""; }
      shownAt = predicted.at;
      show(current.canvas, decoded);
    });
  }

  function stageCentre(stage, evt) {
    var rect = stage.getBoundingClientRect();
    return { x: evt.clientX - rect.left - rect.width / 2, y: evt.clientY - rect.top - rect.height / 2 };
  }

  document.addEventListener("wheel", function (evt) {
    var stage = evt.target.closest("[data-stage]");
    if (!stage) { return; }
    evt.preventDefault();
    var c = stageCentre(stage, evt);
    zoomBy(evt.deltaY < 0 ? 1.15 : 1 / 1.15, c.x, c.y);
  }, { passive: false });

  document.addEventListener("contextmenu", function (evt) {
    if (evt.target.closest("[data-stage]")) { evt.preventDefault(); }
  });

  // Left drag pans; right drag sets window (horizontal) and level (vertical).
  var drag = null;
  document.addEventListener("pointerdown", function (evt) {
    var stage = evt.target.closest("[data-stage]");
    if (!stage || (evt.button !== 0 && evt.button !== 2)) { return; }
    drag = { stage: stage, button: evt.button, startX: evt.clientX, startY: evt.clientY, x: view.x, y: view.y,
             center: current ? current.center : 0, width: current ? current.width : 1 };
    stage.classList.add(evt.button === 2 ? "is-windowing" : "is-dragging");
    stage.setPointerCapture(evt.pointerId);
  });
  document.addEventListener("pointermove", function (evt) {
    if (!drag) { return; }
    var dx = evt.clientX - drag.startX, dy = evt.clientY - drag.startY;
    if (drag.button === 2) {
      if (!current || !current.decoded) { return; }
      var span = Math.max(current.decoded.max - current.decoded.min, 1e-6), per = span / 400;
      current.width = Math.max(drag.width + dx * per, span / 1000);
      current.center = drag.center - dy * per;
      windowMode = "auto"; // a hand-set window is not carried to the next image
      windowModeCustom();
      render();
    } else {
      view.x = drag.x + dx;
      view.y = drag.y + dy;
      applyView();
    }
  });
  function windowModeCustom() {
    document.querySelectorAll("[data-window]").forEach(function (b) { b.classList.remove("is-active"); });
  }
  function endDrag() {
    if (drag) { drag.stage.classList.remove("is-dragging", "is-windowing"); }
    drag = null;
  }
  document.addEventListener("pointerup", endDrag);
  document.addEventListener("pointercancel", endDrag);

  document.addEventListener("click", function (evt) {
    var zoom = evt.target.closest("[data-zoom]");
    if (zoom) {
      var how = zoom.dataset.zoom;
      if (how === "fit") { fit(); } else { zoomBy(how === "in" ? 1.25 : 0.8, 0, 0); }
      return;
    }
    var win = evt.target.closest("[data-window]");
    if (win) { setWindow(win.dataset.window); return; }
    if (evt.target.closest("[data-invert]")) { inverted = !inverted; render(); return; }
    if (evt.target.closest("[data-reset]")) { reset(); }
  });

  document.addEventListener("input", function (evt) {
    var input = evt.target.closest("[data-wl]");
    if (!input || !current || !current.decoded) { return; }
    current[input.dataset.wl] = Number(input.value);
    windowMode = "auto";
    windowModeCustom();
    render();
  });

  function isTyping(target) {
    if (!target || !target.closest) { return false; }
    return Boolean(target.closest("textarea, select, input:not([type=checkbox]):not([type=radio]):not([type=range]), [contenteditable=true]"));
  }

  function busy() {
    if (!ready) { return true; }
    var form = document.getElementById("rate-form");
    var controls = document.getElementById("rate-controls");
    return Boolean(
      (form && form.classList.contains("htmx-request")) ||
      (controls && controls.disabled) ||
      document.querySelector("#rater .htmx-request")
    );
  }

  function press(selector) {
    var button = document.querySelector(selector);
    if (button && !button.disabled && !busy()) { button.click(); }
  }

  function keyMap() {
    var node = document.getElementById("rater-keys");
    try { return node ? JSON.parse(node.textContent) : {}; } catch (e) { return {}; }
  }

  // The key as the settings page names it: printable keys by character,
  // named keys by name, the keypad by position.
  function keyNames(evt) {
    var key = evt.key === " " ? "space" : evt.key.toLowerCase();
    return [key, (evt.code || "").toLowerCase()];
  }

  function autoAdvance() {
    var form = document.getElementById("rate-form");
    return !form || form.dataset.autoAdvance !== "0";
  }

  function selectScore(score) {
    selectedScore = score;
    document.querySelectorAll("[data-score-key]").forEach(function (b) {
      b.classList.toggle("is-selected", b.dataset.scoreKey === score);
      b.setAttribute("aria-pressed", b.dataset.scoreKey === score ? "true" : "false");
    });
  }

  function act(action) {
    if (action.indexOf("score_") === 0) {
      var score = action.slice(6);
      if (autoAdvance()) { press("[data-score-key='" + score + "']"); } else { selectScore(score); }
    } else if (action === "confirm") {
      if (selectedScore) { press("[data-score-key='" + selectedScore + "']"); }
    } else if (action === "skip") { press("[data-skip]");
    } else if (action === "undo") { press("[data-undo]");
    } else if (action === "zoom_in") { zoomBy(1.25, 0, 0);
    } else if (action === "zoom_out") { zoomBy(0.8, 0, 0);
    } else if (action === "fit") { fit();
    } else if (action === "reset") { reset();
    } else if (action === "invert") { inverted = !inverted; render();
    } else if (action === "auto_window") { setWindow("auto");
    } else if (action.indexOf("preset_") === 0) { setWindow(action.slice(7)); }
  }

  document.addEventListener("keydown", function (evt) {
    if (evt.ctrlKey || evt.metaKey || evt.altKey || evt.repeat) { return; }
    if (isTyping(evt.target) || !document.getElementById("rater")) { return; }
    var names = keyNames(evt), keys = keyMap();
    for (var action in keys) {
      if (Object.prototype.hasOwnProperty.call(keys, action) && names.indexOf(keys[action]) !== -1) {
        evt.preventDefault();
        act(action);
        return;
      }
    }
    if (names[0] === "=" && keys.zoom_in === "+") { act("zoom_in"); }
  });

  // The time the physician looked at this image goes with the rating.
  document.addEventListener("htmx:configRequest", function (evt) {
    if (!evt.detail.elt.closest || !evt.detail.elt.closest("#rate-form")) { return; }
    if (shownAt !== null) {
      evt.detail.parameters.time_taken_ms = String(Math.round(performance.now() - shownAt));
    }
  });

  document.addEventListener("htmx:beforeRequest", function (evt) {
    var elt = evt.detail.elt;
    if (!elt.closest || !elt.closest("#rater")) { return; }
    setReady(false);
    // A score (not skip or undo) shows the preloaded next image at once.
    var submitter = evt.detail.requestConfig && evt.detail.requestConfig.triggeringEvent &&
      evt.detail.requestConfig.triggeringEvent.submitter;
    if (elt.id === "rate-form" && submitter && submitter.dataset.scoreKey) { showNextNow(); }
  });

  // A request that swapped nothing in (server or network error) leaves the
  // panel as it was: an image shown ahead of the answer is taken back.
  document.addEventListener("htmx:afterRequest", function (evt) {
    var canvas = document.querySelector("[data-image]");
    if (!current || canvas !== current.canvas || !evt.detail.elt.isConnected) { return; }
    if (predicted && predicted.canvas === canvas) {
      var back = predicted.back;
      predicted = null;
      current.uid = back.uid;
      canvas.dataset.unit = back.unit || "";
      var prompt = document.querySelector("[data-testid='prompt']");
      var modality = document.querySelector("[data-testid='modality']");
      if (prompt) { prompt.textContent = back.prompt; }
      if (modality) { modality.textContent = back.modality; }
      shownAt = back.shownAt;
      show(canvas, back.decoded);
    }
    setReady(true);
  });

  // A swap brings a new canvas: restart zoom, pan and the clock for it.
  document.addEventListener("htmx:afterSettle", startImage);

  // Settings page: click a field and press a key to fill it in.
  document.addEventListener("keydown", function (evt) {
    var input = evt.target.closest && evt.target.closest("[data-key-capture]");
    if (!input || evt.key === "Tab" || evt.key === "Escape" || evt.ctrlKey || evt.metaKey || evt.altKey) { return; }
    evt.preventDefault();
    var code = (evt.code || "").toLowerCase();
    input.value = code.indexOf("numpad") === 0 ? code : (evt.key === " " ? "space" : evt.key.toLowerCase());
  }, true);

  document.addEventListener("DOMContentLoaded", startImage);
})();
