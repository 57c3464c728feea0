/* ML pages: show only the field of the chosen generation filter; on the
   review page, the threshold slider and checking the kept images.
   Loaded from our own static files; the Content-Security-Policy forbids inline script. */
(function () {
  "use strict";

  function sync(form) {
    var chosen = form.querySelector("input[name=mode]:checked");
    form.dataset.modeShown = chosen ? chosen.value : "best_of_n";
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-filter-form]").forEach(function (form) {
      sync(form);
      form.addEventListener("change", function () { sync(form); });
    });
  });

  // Review: the slider mirrors the number field that the form sends.
  function thresholdInput(range) {
    return range.closest(".threshold-pair").querySelector("input[type=number]");
  }

  document.addEventListener("input", function (evt) {
    var range = evt.target.closest("[data-threshold-range]");
    if (range) { thresholdInput(range).value = Number(range.value).toFixed(2); }
  });

  document.addEventListener("change", function (evt) {
    var number = evt.target.closest(".threshold-pair input[type=number]");
    if (number) {
      var range = number.closest(".threshold-pair").querySelector("[data-threshold-range]");
      range.value = number.value;
    }
    if (evt.target.closest("#review-results input[name=image]")) { countChecked(); }
  });

  function countChecked() {
    var label = document.querySelector("[data-checked-count]");
    if (!label) { return; }
    var n = document.querySelectorAll("#review-results input[name=image]:checked").length;
    label.textContent = n ? n + " checked" : "";
  }

  document.addEventListener("click", function (evt) {
    var all = evt.target.closest("[data-check-kept]");
    var none = evt.target.closest("[data-check-none]");
    if (!all && !none) { return; }
    document.querySelectorAll("#review-results .tile").forEach(function (tile) {
      var box = tile.querySelector("input[name=image]");
      if (box) { box.checked = Boolean(all) && tile.dataset.kept === "1"; }
    });
    countChecked();
  });
})();
