/* ML pages: show only the field of the chosen generation filter.
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
})();
