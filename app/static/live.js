// Live pages. The server renders every run view (a feed card, a collection row, the detail
// body) with the same templates as the page; the page's one event stream sends those
// fragments whole when they change. This script only places them: replace the element with
// the same id, insert a new one after its neighbour, or remove one the page no longer shows.
// It never edits inside a fragment, so a live page cannot drift from what a reload shows.
"use strict";
(function () {
  function place(container, message) {
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
  document.addEventListener("DOMContentLoaded", function () {
    var container = document.querySelector("[data-live]");
    if (!container || !window.EventSource) { return; }
    var source = new EventSource(container.getAttribute("data-live"));
    source.addEventListener("put", function (event) {
      place(container, JSON.parse(event.data));
    });
    // The run is completed (or the session ended): nothing more will change.
    source.addEventListener("end", function () { source.close(); });
  });
})();
