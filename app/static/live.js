// Live pages. The server renders every run view (a feed card, a collection row, the detail
// body) with the same templates as the page; the page's one event stream sends those
// fragments whole when they change. This script only places them: replace the element with
// the same id, insert a new one after its neighbour, or remove one the page no longer shows.
// It never changes what a fragment says (only how its times read: in the viewer's time zone),
// so a live page cannot drift from what a reload shows.
"use strict";
(function () {
  function place(container, message) {
    // The stream's first state: these ids are all the page shows (a reconnecting page may
    // hold views that left meanwhile).
    if (message.only) {
      Array.from(container.children).forEach(function (child) {
        if (child.id && message.only.indexOf(child.id) < 0) { child.remove(); }
      });
      return;
    }
    if (message.remove) {
      var gone = document.getElementById(message.remove);
      if (gone) { gone.remove(); }
      return;
    }
    var template = document.createElement("template");
    template.innerHTML = message.html.trim();
    var fresh = template.content.firstElementChild;
    if (!fresh) { return; }
    var old = document.getElementById(message.id);
    if (old) {
      // The version the page already shows (a stream's first events repeat the page).
      if (old.getAttribute("data-v") === fresh.getAttribute("data-v")) { return; }
      // An open "Cancel operation…" question stays open across a redraw.
      var open = old.querySelector("details[open]");
      var again = open && fresh.querySelector("details." + open.className);
      if (again) { again.open = true; }
      old.replaceWith(fresh);
      return;
    }
    var after = message.after && document.getElementById(message.after);
    if (after) { after.after(fresh); } else { container.prepend(fresh); }
  }
  // Times: the server writes them in UTC (what a page without JavaScript shows); here they
  // read in the viewer's own time zone, the exact UTC instant on hover.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var at = new Date(el.getAttribute("datetime"));
      if (isNaN(at.getTime())) { return; }
      el.title = el.getAttribute("datetime");
      var text = at.toLocaleString(undefined, {
        year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
      });
      // Lists also say how long ago, to the minute (redrawn every 30 s).
      if (el.hasAttribute("data-ago")) { text += " (" + ago(Date.now() - at.getTime()) + ")"; }
      el.textContent = text;
    });
  }
  function ago(ms) {
    var minutes = Math.floor(Math.max(ms, 0) / 60000);
    if (minutes < 1) { return "just now"; }
    if (minutes < 60) { return minutes + " min ago"; }
    if (minutes < 1440) { return Math.floor(minutes / 60) + " h ago"; }
    return Math.floor(minutes / 1440) + " d ago";
  }
  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    setInterval(function () { localTimes(document); }, 30000);
    var container = document.querySelector("[data-live]");
    if (!container || !window.EventSource) { return; }
    var url = container.getAttribute("data-live");
    var wait = 1000;
    var source = null;
    function follow() {
      source = new EventSource(url);
      source.addEventListener("put", function (event) {
        wait = 1000;
        place(container, JSON.parse(event.data));
        localTimes(container);
      });
      // Nothing more will change (the run completed, the session ended, or the page shows
      // what this caller may no longer see): stop following.
      source.addEventListener("end", function () { source.close(); });
      // The server is restarting ("restart") or went away: the browser retries by itself
      // while it can; once it gives up (a proxy's 502), follow again, a little later each time.
      source.onerror = function () {
        if (source.readyState === EventSource.CLOSED) {
          setTimeout(follow, wait);
          wait = Math.min(wait * 2, 30000);
        }
      };
    }
    follow();
    // A page left for another is closed, stream and all (a browser may keep it in its
    // back/forward cache, and an open stream there holds one of the few connections a browser
    // allows per site); coming back follows again.
    window.addEventListener("pagehide", function () { if (source) { source.close(); } });
    window.addEventListener("pageshow", function (event) { if (event.persisted) { follow(); } });
  });
})();
