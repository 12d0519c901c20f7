// Live progress: every element with data-run-id follows its run's event stream and redraws
// its progress widget following the progress contract (a bar only for counted views).
"use strict";
(function () {
  function text(tag, cls, value) {
    var el = document.createElement(tag);
    if (cls) { el.className = cls; }
    el.textContent = value;
    return el;
  }
  function spinner() {
    var s = text("span", "spinner", "");
    s.setAttribute("role", "status");
    s.setAttribute("aria-label", "working");
    return s;
  }
  function render(container, doc) {
    var p = doc.progress;
    var box = document.createElement("div");
    box.className = "progress";
    box.setAttribute("data-progress", "");
    if (p.mode === "counted") {
      var bar = document.createElement("progress");
      bar.setAttribute("role", "progressbar");
      bar.max = 100;
      bar.value = p.percent;
      bar.setAttribute("aria-valuenow", String(p.percent));
      bar.setAttribute("aria-valuemin", "0");
      bar.setAttribute("aria-valuemax", "100");
      bar.setAttribute("aria-label", doc.type + " progress");
      box.appendChild(bar);
      box.appendChild(text("span", "numbers", " " + p.processed + "/" + p.total + " (" + p.percent + "%)"));
    } else if (p.mode === "phased") {
      box.appendChild(spinner());
      box.appendChild(text("span", "phase", " phase " + p.phase.index + " of " + p.phase.count + ": " + p.phase.label));
    } else if (p.mode === "composite") {
      var list = document.createElement("ul");
      list.className = "components";
      p.components.forEach(function (c) {
        var li = document.createElement("li");
        li.appendChild(text("span", "component-label", c.label));
        li.appendChild(document.createTextNode(": "));
        var state = c.state;
        if (state === "active" && c.progress.mode === "counted") {
          state = c.progress.processed + "/" + c.progress.total + " (" + c.progress.percent + "%)";
        } else if (state === "active" && c.progress.mode === "phased") {
          state = "phase " + c.progress.phase.index + " of " + c.progress.phase.count + ": " + c.progress.phase.label;
        }
        li.appendChild(text("span", "component-state", state));
        list.appendChild(li);
      });
      box.appendChild(list);
    } else if (p.mode === "none") {
      box.appendChild(text("span", "outcome outcome-" + doc.outcome, doc.outcome));
    } else {
      box.appendChild(spinner());
      // A queued run is waiting (for a worker, or its tenant's slot), not working.
      var activity = doc.status === "queued" ? " waiting for a worker"
        : (p.processed === null ? " working" : " working, " + p.processed + " processed");
      box.appendChild(text("span", "activity", p.waiting_reason ? " " + p.waiting_reason : activity));
    }
    // The same notes as the server's progress.html.
    if (p.estimate) { box.appendChild(text("p", "estimate", "Estimate: " + p.estimate)); }
    if (p.paused) { box.appendChild(text("p", "paused", "Paused: in-flight items finish, nothing new starts until it is resumed.")); }
    if (p.stale) { box.appendChild(text("p", "stale", "No progress for 10 minutes: the run may be stuck.")); }
    if (p.anomaly) { box.appendChild(text("p", "anomaly", "The stored counts are inconsistent; no bar is shown.")); }
    var old = container.querySelector("[data-progress]");
    if (old) { old.replaceWith(box); }
    // The run-control forms follow the document, with the server's rule (pages.rs Controls).
    var done = doc.status === "completed";
    var allowed = {
      pause: !done && !p.paused,
      resume: !done && p.paused,
      cancel: !done,
      retry: done && (doc.summary_counts.failed || 0) > 0
    };
    document.querySelectorAll("form[data-when]").forEach(function (form) {
      form.hidden = !allowed[form.getAttribute("data-when")];
    });
    var status = container.querySelector(".run-status");
    if (status) { status.textContent = doc.status; }
    Object.keys(doc.summary_counts).forEach(function (key) {
      var cell = document.querySelector('[data-count="' + key + '"]');
      if (cell) { cell.textContent = String(doc.summary_counts[key]); }
    });
  }
  function follow(container) {
    var id = container.getAttribute("data-run-id");
    var source = new EventSource("/api/operations/" + encodeURIComponent(id) + "/events");
    source.addEventListener("progress", function (event) {
      var doc = JSON.parse(event.data);
      render(container, doc);
      if (doc.status === "completed") { source.close(); }
    });
    source.onerror = function () { if (source.readyState === EventSource.CLOSED) { source.close(); } };
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-run-id]").forEach(follow);
  });
})();
