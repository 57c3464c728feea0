/* medrlhf page behaviour: the rating viewer, keyboard rating and timing.
   Loaded from our own static files; the Content-Security-Policy forbids inline script. */
(function () {
  "use strict";

  var MIN_ZOOM = 0.5;
  var MAX_ZOOM = 12;
  // Brightness and contrast stay as the physician set them from image to image.
  var filter = { brightness: 100, contrast: 100 };
  var view = { zoom: 1, x: 0, y: 0 };
  var shownAt = null;
  var currentImage = null;
  // Keys act only once htmx has finished swapping in and wiring up the panel.
  var ready = false;

  function setReady(value) {
    ready = value;
    document.documentElement.dataset.raterReady = value ? "1" : "0";
  }

  function viewerImage() { return document.querySelector("[data-image]"); }

  function applyView() {
    var img = viewerImage();
    if (!img) { return; }
    img.style.transform = "translate(" + view.x + "px, " + view.y + "px) scale(" + view.zoom + ")";
    img.style.filter = "brightness(" + filter.brightness + "%) contrast(" + filter.contrast + "%)";
    document.querySelectorAll("[data-filter]").forEach(function (input) {
      input.value = filter[input.dataset.filter];
    });
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
    filter = { brightness: 100, contrast: 100 };
    fit();
  }

  function startImage() {
    var img = viewerImage();
    currentImage = img;
    setReady(true);
    view = { zoom: 1, x: 0, y: 0 };
    shownAt = null;
    if (!img) { return; }
    applyView();
    if (img.complete && img.naturalWidth) {
      shownAt = performance.now();
    } else {
      img.addEventListener("load", function () { shownAt = performance.now(); }, { once: true });
    }
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

  var drag = null;
  document.addEventListener("pointerdown", function (evt) {
    var stage = evt.target.closest("[data-stage]");
    if (!stage || evt.button !== 0) { return; }
    drag = { stage: stage, x: evt.clientX - view.x, y: evt.clientY - view.y };
    stage.classList.add("is-dragging");
    stage.setPointerCapture(evt.pointerId);
  });
  document.addEventListener("pointermove", function (evt) {
    if (!drag) { return; }
    view.x = evt.clientX - drag.x;
    view.y = evt.clientY - drag.y;
    applyView();
  });
  function endDrag() {
    if (drag) { drag.stage.classList.remove("is-dragging"); }
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
    if (evt.target.closest("[data-reset]")) { reset(); }
  });

  document.addEventListener("input", function (evt) {
    var input = evt.target.closest("[data-filter]");
    if (!input) { return; }
    filter[input.dataset.filter] = Number(input.value);
    applyView();
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

  document.addEventListener("keydown", function (evt) {
    if (evt.ctrlKey || evt.metaKey || evt.altKey || evt.repeat) { return; }
    if (isTyping(evt.target) || !document.getElementById("rater")) { return; }
    var key = evt.key.toLowerCase();
    if (key === "1" || key === "2" || key === "3") {
      evt.preventDefault();
      press("[data-score-key='" + key + "']");
    } else if (key === "s") {
      evt.preventDefault();
      press("[data-skip]");
    } else if (key === "u") {
      evt.preventDefault();
      press("[data-undo]");
    } else if (key === "+" || key === "=") {
      zoomBy(1.25, 0, 0);
    } else if (key === "-") {
      zoomBy(0.8, 0, 0);
    } else if (key === "0") {
      fit();
    } else if (key === "r") {
      reset();
    }
  });

  // The time the physician looked at this image goes with the rating.
  document.addEventListener("htmx:configRequest", function (evt) {
    if (!evt.detail.elt.closest || !evt.detail.elt.closest("#rate-form")) { return; }
    if (shownAt !== null) {
      evt.detail.parameters.time_taken_ms = String(Math.round(performance.now() - shownAt));
    }
  });

  document.addEventListener("htmx:beforeRequest", function (evt) {
    if (evt.detail.elt.closest && evt.detail.elt.closest("#rater")) { setReady(false); }
  });

  // A request that swapped nothing in (network error) leaves the panel as it was.
  document.addEventListener("htmx:afterRequest", function (evt) {
    if (viewerImage() === currentImage && evt.detail.elt.isConnected) { setReady(true); }
  });

  // A swap brings a new <img> element: restart zoom, pan and the clock for it.
  document.addEventListener("htmx:afterSettle", function () {
    if (viewerImage() !== currentImage) { startImage(); }
  });

  document.addEventListener("DOMContentLoaded", startImage);
})();
