// msgr mail: live updates for an open page. Every page works without this file; with it, the message
// list and the folder counts refresh when the server says the mailbox changed (Server-Sent Events at
// /mail/events), and the Delete button asks before deleting for good.
(function () {
  "use strict";

  // Fetches this page again and swaps in the parts that show mail.
  function refresh() {
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected || !r.ok) { return null; }
        return r.text();
      })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        ["folders", "messages", "empty", "paging"].forEach(function (id) {
          var fresh = doc.getElementById(id);
          var old = document.getElementById(id);
          if (fresh && old) {
            old.replaceWith(document.importNode(fresh, true));
          } else if (fresh && !old && id === "messages") {
            var empty = document.getElementById("empty");
            if (empty) { empty.replaceWith(document.importNode(fresh, true)); }
          } else if (!fresh && old && id === "empty") {
            // The list replaced it above.
          }
        });
      })
      .catch(function () { /* the next event tries again */ });
  }

  function listen() {
    if (!window.EventSource || !document.getElementById("folders")) { return; }
    var source = new EventSource("/mail/events");
    source.addEventListener("mail", refresh);
    source.addEventListener("bye", function () {
      source.close();
      window.location.assign("/mail/login");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    listen();
    var del = document.getElementById("delete");
    if (del && /good/.test(del.textContent)) {
      del.addEventListener("submit", function (e) {
        if (!window.confirm("Delete this message for good?")) { e.preventDefault(); }
      });
    }
  });
})();
