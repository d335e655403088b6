/* Runboard: theme (before first paint, so no flash) and keyboard navigation.
   j/k move a row focus, Enter opens it, / focuses the key search, ? opens the help.
   Everything here is an addition: the pages work as plain loads without it. */
(function () {
  "use strict";
  var KEY = "runboard-theme";

  function storedTheme() {
    try {
      return window.localStorage.getItem(KEY);
    } catch (e) {
      return null;
    }
  }

  function applyTheme(theme) {
    var root = document.documentElement;
    if (theme === "dark" || theme === "light") root.setAttribute("data-theme", theme);
    else root.removeAttribute("data-theme");
  }

  applyTheme(storedTheme()); // runs in <head>: before the body is painted

  function systemTheme() {
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches
      ? "dark"
      : "light";
  }

  function setupThemeToggle() {
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    function label() {
      var current = storedTheme() || systemTheme();
      button.textContent = current === "dark" ? "Light" : "Dark";
      button.setAttribute("aria-label", "Switch to " + (current === "dark" ? "light" : "dark") + " theme");
    }
    button.hidden = false;
    label();
    button.addEventListener("click", function () {
      var next = (storedTheme() || systemTheme()) === "dark" ? "light" : "dark";
      try {
        window.localStorage.setItem(KEY, next);
      } catch (e) {
        /* private mode: the choice lasts for this page only */
      }
      applyTheme(next);
      label();
    });
  }

  function rows() {
    var table = document.querySelector("table[data-rows]");
    return table ? Array.prototype.slice.call(table.querySelectorAll("tbody tr[tabindex]")) : [];
  }

  function move(step) {
    var all = rows();
    if (!all.length) return;
    var at = all.indexOf(document.activeElement.closest ? document.activeElement.closest("tr") : null);
    var next = at < 0 ? (step > 0 ? 0 : all.length - 1) : Math.min(all.length - 1, Math.max(0, at + step));
    all.forEach(function (row) {
      row.classList.remove("cursor");
    });
    all[next].classList.add("cursor");
    all[next].focus();
    all[next].scrollIntoView({ block: "nearest" });
  }

  function openHelp() {
    var dialog = document.getElementById("keys-help");
    if (dialog && !dialog.open && dialog.showModal) dialog.showModal();
  }

  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || (target && target.isContentEditable);
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (typing(target)) {
      if (event.key === "Escape") target.blur();
      return;
    }
    if (document.querySelector("dialog[open]")) return; // the dialog owns the keys
    if (event.key === "j") move(1);
    else if (event.key === "k") move(-1);
    else if (event.key === "/") {
      var search = document.getElementById("q");
      if (!search) return;
      search.focus();
      search.select();
    } else if (event.key === "?") openHelp();
    else if (event.key === "Enter" && target.tagName === "TR") {
      var link = target.querySelector("a[href]");
      if (link) link.click();
    } else return;
    event.preventDefault();
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupThemeToggle();
    document.addEventListener("keydown", onKey);
    var help = document.getElementById("help-link");
    if (help)
      help.addEventListener("click", function (event) {
        event.preventDefault();
        openHelp();
      });
  });
})();
