// Operator actions in a <dialog>: the action links load the confirmation
// (htmx, into #action-dialog) and this opens it; Cancel/Close links close it.
// Without JavaScript the same links and forms are whole pages.
(function () {
  "use strict";

  function host() {
    return document.getElementById("action-dialog");
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    var dialog = host();
    if (!dialog || !dialog.contains(event.detail.target)) return;
    if (!dialog.open) dialog.showModal();
    var first = dialog.querySelector("textarea, input[type=number]");
    if (first && !first.value) first.focus();
  });

  document.addEventListener("click", function (event) {
    var closer = event.target.closest("[data-close-dialog]");
    var dialog = closer && closer.closest("dialog");
    if (!dialog) return;
    event.preventDefault();
    dialog.close();
  });

  // Recovery countdowns on rows: "in 12 s" ticking down to "0 s" (same format as ages).
  function left(seconds) {
    seconds = Math.max(0, Math.ceil(seconds));
    if (seconds < 60) return seconds + " s";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min " + (seconds % 60) + " s";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  var offsetMs = null; // server clock minus browser clock

  function tickCountdowns() {
    if (document.hidden) return;
    if (offsetMs === null) {
      var serverNow = parseFloat(document.body.getAttribute("data-server-now") || "");
      offsetMs = isNaN(serverNow) ? 0 : serverNow * 1000 - Date.now();
    }
    var now = Date.now() + offsetMs;
    var all = document.querySelectorAll(".countdown[data-due]");
    for (var i = 0; i < all.length; i++) {
      var due = Date.parse(all[i].getAttribute("data-due"));
      var out = all[i].querySelector(".left");
      if (!isNaN(due) && out) out.textContent = left((due - now) / 1000);
    }
  }

  window.setInterval(tickCountdowns, 1000);

  // Closing an action's result shows its effect at once: the changes it caused
  // arrived while the dialog was open, so they were held behind the notice.
  document.addEventListener("close", function (event) {
    if (event.target !== host()) return;
    var acted = host().querySelector('.badge[class*="result-"]') !== null;
    host().innerHTML = "";
    if (acted && window.runboardLive) window.runboardLive.resync();
  }, true);
})();
