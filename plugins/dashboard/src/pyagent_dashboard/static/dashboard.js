// pyagent dashboard: live regions and confirmations. No framework, no build step.
(function () {
  "use strict";

  // A region with data-live="URL" listens to that server-sent event stream; on "changed" the
  // page is fetched again and the region's content swapped (open "show all" boxes stay open).
  function follow(region) {
    var source = new EventSource(region.getAttribute("data-live"), { withCredentials: true });
    var busy = false;
    // Someone typing into a form in the region (an answer) keeps it: the page says it changed.
    region.addEventListener("input", function () { region.setAttribute("data-editing", "true"); });
    region.addEventListener("change", function () { region.setAttribute("data-editing", "true"); });
    source.addEventListener("changed", function () {
      if (busy) { return; }
      if (region.getAttribute("data-editing") === "true") {
        if (!document.getElementById("live-stale")) {
          var note = document.createElement("p");
          note.id = "live-stale";
          note.className = "stale";
          note.textContent = "This page changed since it was loaded: reload it to see them (reloading clears what you typed here).";
          region.parentNode.insertBefore(note, region);
        }
        return;
      }
      busy = true;
      fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (html === null) { return; }
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(region.id);
          if (!fresh) { return; }
          var open = [];
          region.querySelectorAll("details[open]").forEach(function (d, i) { open.push(i); });
          source.close();
          region.innerHTML = fresh.innerHTML;
          region.setAttribute("data-live", fresh.getAttribute("data-live"));
          region.querySelectorAll("details").forEach(function (d, i) { if (open.indexOf(i) >= 0) { d.open = true; } });
          region.setAttribute("data-updates", String(Number(region.getAttribute("data-updates") || "0") + 1));
          wire(region);
          follow(region);
        })
        .finally(function () { busy = false; });
    });
  }

  function wire(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    wire(document);
    document.querySelectorAll("[data-live]").forEach(follow);
  });
})();
