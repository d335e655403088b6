// Live updates for Runboard's pages; the pages work without it (plain loads).
//
// The server pushes HTML over /ws/sessions/ (htmx ws extension): session rows
// rendered from the page's own partial, each an out-of-band swap by id, plus
// the header's stuck count. This file decides *when* to swap:
// - rows wait behind an "N changes — apply" notice while the pointer is over
//   the table, a <dialog> is open or text is selected; rows not on this page
//   (new sessions, other filters or pages) count toward the notice too;
// - a hidden tab drops pushes and re-fetches its table when shown again;
// - a closed socket shows "Not live — reconnecting"; on reconnect the table
//   is re-fetched (the same view, partial, via htmx).
// It also ticks every age each second: a <time datetime> whose text is an age
// in the `age` filter's format (absolute dates in a <time> are left alone).
(function () {
  "use strict";

  var socketElt = null;
  var pendingIds = new Set(); // rows held back or not on this page
  var needsResync = false; // held changes are only applied by re-fetching
  var wasOpen = false;
  var isOpen = false;
  var stale = false; // pushes were dropped while the tab was hidden
  var clockOffsetMs = 0; // server clock minus browser clock, from the page

  // Same compact format as the `age` template filter (templatetags/runboard.py).
  function age(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + " s";
    var minutes = Math.floor(seconds / 60);
    seconds %= 60;
    if (minutes < 60) return minutes + " min " + seconds + " s";
    var hours = Math.floor(minutes / 60);
    minutes %= 60;
    if (hours < 24) return hours + " h " + minutes + " min";
    return Math.floor(hours / 24) + " d " + (hours % 24) + " h";
  }

  var AGE_TEXT = /^\d+ (s|min \d+ s|h \d+ min|d \d+ h)$/;

  function tickAges() {
    if (document.hidden) return;
    var now = Date.now() + clockOffsetMs;
    var times = document.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      if (!AGE_TEXT.test(times[i].textContent.trim())) continue;
      var since = Date.parse(times[i].getAttribute("datetime"));
      if (!isNaN(since)) {
        var text = age((now - since) / 1000);
        if (times[i].textContent !== text) times[i].textContent = text;
      }
    }
  }

  function table() {
    return document.getElementById("sessions-table") || document.querySelector("table.sessions");
  }

  function holding() {
    var t = table();
    var selection = window.getSelection();
    return (
      (t !== null && t.matches(":hover")) ||
      document.querySelector("dialog[open]") !== null ||
      (selection !== null && !selection.isCollapsed && selection.toString() !== "")
    );
  }

  function showNotice() {
    var notice = document.getElementById("live-apply");
    if (!notice) return;
    var n = pendingIds.size;
    if (n === 0 && !needsResync) {
      notice.hidden = true;
      return;
    }
    var label = n === 1 ? "1 change" : (n || "New") + " changes";
    notice.textContent = label + " \u2014 apply";
    notice.hidden = false;
  }

  function clearNotice() {
    pendingIds.clear();
    needsResync = false;
    showNotice();
  }

  // Re-fetch the table: the same view answers with just its table partial for htmx.
  function resync() {
    var t = table();
    clearNotice();
    stale = false;
    if (!t || !window.htmx) return Promise.resolve();
    if (!t.id) t.id = "sessions-table";
    return htmx
      .ajax("GET", window.location.href, {
        target: "#" + t.id,
        swap: "outerHTML",
        headers: { "HX-Runboard-Resync": "1" },
      })
      .then(forgetListed);
  }

  // A push for a row not yet on the page may land while the re-fetch is on its
  // way; once the fresh table lists that row, it is no longer a pending change.
  function forgetListed() {
    pendingIds.forEach(function (id) {
      if (document.getElementById(id)) pendingIds.delete(id);
    });
    showNotice();
  }

  function onMessage(event) {
    event.preventDefault(); // swaps are ours to time; swapOutOfBand below does them
    if (document.hidden) {
      stale = true;
      return;
    }
    var template = document.createElement("template");
    template.innerHTML = event.detail.message;
    var parts = Array.prototype.slice.call(template.content.children);
    var hold = holding();
    var listed = table() !== null; // rows only matter on a page that lists sessions
    var now = [];
    parts.forEach(function (part) {
      var id = part.id;
      if (id === "live-resync") {
        if (!listed) return;
        if (hold) needsResync = true;
        else window.setTimeout(resync, 0);
      } else if (id && id.indexOf("session-") === 0) {
        if (!listed) return;
        if (hold || !document.getElementById(id)) pendingIds.add(id);
        else now.push(part);
      } else if (id && document.getElementById(id)) {
        now.push(part); // header bits such as #stuck-count never wait
      }
    });
    if (now.length) {
      swapOutOfBand(now);
      tickAges();
    }
    showNotice();
  }

  // The elements of a pushed row that htmx must wire up (the "Clear…" link).
  // Processing only them, not the whole row, spares htmx's walk over every
  // cell and its two events per processed node, on every push.
  var HX_ELEMENTS = "[hx-get], [hx-post]";

  // The out-of-band swaps of a push, done directly: each element replaces the
  // one with its id (what hx-swap-oob="true" means), then htmx wires up the
  // elements with hx-* attributes. Cheaper than htmx.swap's general path (no
  // settle pass a frame later), which matters with a push every few dozen
  // milliseconds.
  // Focus stays on a replaced row, as htmx keeps it.
  function swapOutOfBand(parts) {
    var active = document.activeElement;
    var focusedId = active && active !== document.body ? active.id : "";
    var swapped = [];
    parts.forEach(function (part) {
      var old = document.getElementById(part.id);
      if (!old) return;
      part.removeAttribute("hx-swap-oob");
      old.replaceWith(part);
      swapped.push(part);
    });
    if (window.htmx) {
      swapped.forEach(function (part) {
        part.querySelectorAll(HX_ELEMENTS).forEach(function (elt) {
          htmx.process(elt);
        });
      });
    }
    if (focusedId && !document.body.contains(active)) {
      var again = document.getElementById(focusedId);
      if (again) again.focus({ preventScroll: true });
    }
  }

  function setLive(live, text) {
    var banner = document.getElementById("live-status");
    if (!banner) return;
    if (text) banner.textContent = text;
    banner.hidden = live;
    document.documentElement.classList.toggle("not-live", !live);
  }

  // The login session ended (logged out here or elsewhere, or expired): say so,
  // with a link back to this page through the login form.
  function loggedOut() {
    setLive(false, "You were logged out \u2014 ");
    var banner = document.getElementById("live-status");
    if (!banner) return;
    var link = document.createElement("a");
    link.href = "/login/?next=" + encodeURIComponent(window.location.pathname + window.location.search);
    link.textContent = "log in again";
    link.id = "live-login";
    banner.appendChild(link);
  }

  // htmx's ws extension retries only after abnormal closes; a server that shut
  // down cleanly (1001) is worth retrying too. 4401: not logged in (any more);
  // 4403: the user has no role that may watch (roles.py).
  var retryCodes = [1006, 1011, 1012, 1013];
  var ownRetries = 0;

  function onClose(event) {
    var code = event.detail.event.code;
    isOpen = false;
    if (code === 4401) {
      loggedOut();
      return;
    }
    if (code === 4403) {
      setLive(false, "Not live \u2014 your role does not receive live updates");
      return;
    }
    setLive(false, "Not live \u2014 reconnecting\u2026");
    if (retryCodes.indexOf(code) < 0 && event.detail.socketWrapper) {
      var delay = backoff(ownRetries++);
      window.setTimeout(event.detail.socketWrapper.reconnect, delay);
    }
  }

  function onOpen() {
    ownRetries = 0;
    isOpen = true;
    setLive(true);
    if (wasOpen) resync(); // we may have missed pushes while closed
    wasOpen = true;
  }

  // Full jitter, capped at 10 s so a restarted server is seen again soon.
  function backoff(retry) {
    var max = Math.min(10000, 500 * Math.pow(2, Math.min(retry, 5)));
    return max / 2 + (Math.random() * max) / 2;
  }

  function onVisibility() {
    if (!document.hidden && stale) resync();
    tickAges();
  }

  function init() {
    socketElt = document.querySelector("[ws-connect]");
    var serverNow = parseFloat(document.body.getAttribute("data-server-now") || "");
    if (!isNaN(serverNow)) clockOffsetMs = serverNow * 1000 - Date.now();
    if (window.htmx) htmx.config.wsReconnectDelay = backoff;
    var notice = document.getElementById("live-apply");
    if (notice) notice.addEventListener("click", resync);
    document.addEventListener("visibilitychange", onVisibility);
    if (socketElt) {
      socketElt.addEventListener("htmx:wsBeforeMessage", onMessage);
      socketElt.addEventListener("htmx:wsClose", onClose);
      socketElt.addEventListener("htmx:wsOpen", onOpen);
    }
    window.setInterval(tickAges, 1000);
    tickAges();
  }

  // For tests and benchmarks: what the page is waiting to apply.
  window.runboardLive = {
    pending: function () {
      return Array.from(pendingIds);
    },
    resync: resync,
    isLive: function () {
      return isOpen;
    },
    age: age,
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
