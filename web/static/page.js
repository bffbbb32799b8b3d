// The settings page's little script: filter the group list as one types, and follow a running sync.
// Everything works without it (the run page offers a reload link); nothing here holds a key or a token.
(function () {
  "use strict";

  var search = document.getElementById("group-search");
  if (search) {
    // Enter in the search box filters, as typing does; it must not submit (and so save) the settings.
    search.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); }
    });
    search.addEventListener("input", function () {
      var needle = search.value.trim().toLowerCase();
      document.querySelectorAll("#groups tbody tr[data-name]").forEach(function (row) {
        row.hidden = needle !== "" && row.getAttribute("data-name").indexOf(needle) === -1;
      });
    });
  }

  var run = document.getElementById("run");
  var statusUrl = run && run.getAttribute("data-status-url");
  if (statusUrl) {
    var poll = function () {
      fetch(statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (answer) {
          if (!answer.ok) { throw new Error(String(answer.status)); }
          return answer.json();
        })
        .then(function (state) {
          document.getElementById("outcome").textContent = state.outcome;
          document.querySelectorAll("[data-count]").forEach(function (cell) {
            cell.textContent = state.counts[cell.getAttribute("data-count")] || 0;
          });
          if (state.outcome === "queued" || state.outcome === "running") {
            window.setTimeout(poll, 1000);
          } else {
            window.location.reload(); // the ended run's page: its counts and changes
          }
        })
        .catch(function () { window.setTimeout(poll, 3000); });
    };
    window.setTimeout(poll, 500);
  }
})();
