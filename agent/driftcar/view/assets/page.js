// driftcar live page: re-fetch the content every data-refresh seconds (same origin, same
// credentials), keep the open/closed state of the feature panels, say when it last worked.
(function () {
  "use strict";
  var body = document.body, status = document.getElementById("status");
  var every = parseFloat(body.getAttribute("data-refresh") || "0");
  if (!(every > 0) || !window.fetch) { return; }
  var refreshes = 0;
  function openPanels() {
    var open = {};
    document.querySelectorAll("details.feature").forEach(function (d) { open[d.id] = d.open; });
    return open;
  }
  function tick() {
    fetch(location.pathname + "?part=body", {credentials: "same-origin", cache: "no-store"})
      .then(function (resp) {
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.text();
      })
      .then(function (html) {
        var open = openPanels();
        document.getElementById("content").innerHTML = html;
        document.querySelectorAll("details.feature").forEach(function (d) {
          if (Object.prototype.hasOwnProperty.call(open, d.id)) { d.open = open[d.id]; }
        });
        refreshes += 1;
        body.setAttribute("data-refreshes", String(refreshes));
        status.textContent = "live, refreshed every " + every + " s (last " + new Date().toLocaleTimeString() + ")";
      })
      .catch(function (err) { status.textContent = "refresh failed: " + err.message + " (retrying)"; })
      .then(function () { setTimeout(tick, every * 1000); });
  }
  status.textContent = "live, refreshed every " + every + " s";
  setTimeout(tick, every * 1000);
})();
