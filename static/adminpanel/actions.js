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

  document.addEventListener("close", function (event) {
    if (event.target === host()) host().innerHTML = "";
  }, true);
})();
