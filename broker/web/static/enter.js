"use strict";
(function () {
  var status = document.getElementById("status");
  var token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  // The token must not stay in the address bar, the history or a bookmark.
  history.replaceState(null, "", location.pathname);
  fetch("/__broker/session", {
    method: "POST",
    credentials: "same-origin",
    cache: "no-store",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: token })
  }).then(function (response) {
    if (response.ok) {
      location.replace("/");
      return;
    }
    return response.json().then(function (body) {
      status.textContent = body.detail || "Could not open the workspace.";
    });
  }).catch(function () {
    status.textContent = "Could not reach the broker. Check the connection and reload.";
  });
})();
