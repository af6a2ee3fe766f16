// The live stream page (/stream): opens the Server-Sent Events stream of
// the chosen log and filters, and prepends each event as a table row.
// Text from events is set with textContent only, never parsed as HTML.
// While the tab is hidden the stream is closed; when it shows again the
// stream reopens after the last event seen, so nothing is missed.
(function () {
  "use strict";
  var section = document.getElementById("stream");
  if (!section) return;
  var rows = document.getElementById("stream-rows");
  var status = document.getElementById("stream-status");
  var src = section.getAttribute("data-src");
  var log = section.getAttribute("data-log");
  var MAX_ROWS = 500;
  var source = null;
  var lastId = null;
  var received = 0;
  var retry = null;

  function say(text) {
    if (status) status.textContent = text;
  }

  function cell(tr, text) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    tr.appendChild(td);
    return td;
  }

  function add(item) {
    var e = item.event || {};
    var tr = document.createElement("tr");
    var first = document.createElement("td");
    var a = document.createElement("a");
    a.href = "/events/" + encodeURIComponent(log) + "/" + item.index;
    a.textContent = String(item.index);
    first.appendChild(a);
    tr.appendChild(first);
    cell(tr, e.occurred_at);
    cell(tr, e.action);
    cell(tr, e.actor ? (e.actor.name || e.actor.id) : "");
    cell(tr, e.outcome || "");
    cell(tr, e.tenant || "");
    cell(tr, e.message || "");
    if (e.outcome === "failure") tr.className = "failure";
    rows.insertBefore(tr, rows.firstChild);
    while (rows.rows.length > MAX_ROWS) rows.deleteRow(rows.rows.length - 1);
  }

  function open() {
    if (source || retry !== null) return;
    var url = src;
    // A new EventSource sends no Last-Event-ID: say where to resume.
    if (lastId !== null) url += "&after=" + encodeURIComponent(lastId);
    source = new EventSource(url);
    source.onopen = function () {
      say("Live: " + received + " events received.");
    };
    source.onmessage = function (m) {
      lastId = m.lastEventId;
      received += 1;
      try {
        add(JSON.parse(m.data));
      } catch (err) {
        return;
      }
      say("Live: " + received + " events received.");
    };
    source.addEventListener("gap", function (m) {
      lastId = m.lastEventId;
      try {
        var g = JSON.parse(m.data);
        say(g.skipped + " older events were skipped; search shows them.");
      } catch (err) {
        return;
      }
    });
    source.addEventListener("error", function (m) {
      if (m.data) {
        say("The stream stopped: the server could not read the log.");
        close();
        return;
      }
      if (source && source.readyState === EventSource.CLOSED) {
        // Refused (the server is at its bound of streams, say): the
        // browser does not retry by itself.
        close();
        say("The server refused the stream; trying again in 5 seconds.");
        retry = window.setTimeout(function () {
          retry = null;
          if (!document.hidden) open();
        }, 5000);
      } else {
        say("Disconnected; reconnecting…");
      }
    });
  }

  function close() {
    if (source) {
      source.close();
      source = null;
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      close();
      say("Paused while the page is hidden.");
    } else {
      open();
    }
  });
  if (!document.hidden) open();
})();
