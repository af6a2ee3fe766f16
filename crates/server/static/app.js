// Sealtrail dashboard glue. Loaded with `defer` after htmx on every page;
// no inline code anywhere (the pages' CSP is script-src 'self').
//  - htmx: no eval, no injected inline styles, the session's CSRF token
//    (from <meta name="csrf-token">) sent as X-CSRF-Token.
//  - Times: <time datetime> elements are rendered in UTC by the server;
//    the toggle (button[data-tz-toggle]) rewrites them in the browser's
//    zone and back, remembered in localStorage; [data-tz-name] shows the zone.
//  - Charts: <div class="chart" data-source="ID"> is drawn with uPlot from
//    the JSON in <script type="application/json" id="ID">:
//    {"x": [unix seconds...], "series": [{"label": "...", "values": [...]}]}.
(function () {
  "use strict";

  if (window.htmx) {
    htmx.config.allowEval = false;
    htmx.config.allowScriptTags = false;
    htmx.config.includeIndicatorStyles = false;
    htmx.config.selfRequestsOnly = true;
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  document.addEventListener("htmx:configRequest", function (e) {
    var token = csrfToken();
    if (token) {
      e.detail.headers["X-CSRF-Token"] = token;
    }
  });

  // ---- Times -------------------------------------------------------------
  var KEY = "sealtrail.tz";
  function zone() {
    try {
      return localStorage.getItem(KEY) === "local" ? "local" : "utc";
    } catch (_) {
      return "utc";
    }
  }
  function pad(n, w) {
    var s = String(n);
    while (s.length < (w || 2)) s = "0" + s;
    return s;
  }
  function offsetName(d) {
    var m = -d.getTimezoneOffset();
    var sign = m >= 0 ? "+" : "-";
    m = Math.abs(m);
    return "UTC" + sign + pad(Math.floor(m / 60)) + ":" + pad(m % 60);
  }
  function localZoneName() {
    var name = "";
    try {
      name = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (_) {}
    var off = offsetName(new Date());
    return name ? name + " (" + off + ")" : off;
  }
  function format(d, local) {
    if (local) {
      return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
        pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." +
        pad(d.getMilliseconds(), 3);
    }
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + "." +
      pad(d.getUTCMilliseconds(), 3);
  }
  function applyZone(root) {
    var local = zone() === "local";
    (root || document).querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d.getTime())) return;
      t.textContent = format(d, local);
      t.setAttribute("title", local ? offsetName(d) : "UTC");
    });
    document.querySelectorAll("[data-tz-name]").forEach(function (el) {
      el.textContent = local ? localZoneName() : "UTC";
    });
    document.querySelectorAll("button[data-tz-toggle]").forEach(function (b) {
      b.hidden = false;
      b.textContent = local ? "Show times in UTC" : "Show local times";
      b.setAttribute("aria-pressed", local ? "true" : "false");
    });
  }
  document.addEventListener("click", function (e) {
    var b = e.target.closest && e.target.closest("button[data-tz-toggle]");
    if (!b) return;
    try {
      localStorage.setItem(KEY, zone() === "local" ? "utc" : "local");
    } catch (_) {}
    applyZone(document);
    drawCharts(document);
  });

  // ---- Charts ------------------------------------------------------------
  var charts = [];
  function drawCharts(root) {
    if (!window.uPlot) return;
    charts.forEach(function (c) { c.plot.destroy(); });
    charts = [];
    (root || document).querySelectorAll("div.chart[data-source]").forEach(function (el) {
      var src = document.getElementById(el.getAttribute("data-source"));
      if (!src) return;
      var data;
      try {
        data = JSON.parse(src.textContent);
      } catch (_) {
        return;
      }
      if (!data.x || data.x.length === 0) return;
      var cols = [data.x];
      var series = [{}];
      var colors = ["#1f5fa8", "#b3261e", "#2e7d32", "#6a1b9a"];
      data.series.forEach(function (s, i) {
        cols.push(s.values);
        series.push({ label: s.label, stroke: colors[i % colors.length], width: 2,
          fill: i === 0 ? "rgba(31,95,168,0.08)" : undefined });
      });
      el.textContent = "";
      var opts = {
        width: Math.max(280, el.clientWidth),
        height: 220,
        tzDate: zone() === "local" ? function (ts) { return new Date(ts * 1e3); }
          : function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
        series: series,
        axes: [{}, { size: 60 }],
        scales: { y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } },
      };
      charts.push({ el: el, plot: new uPlot(opts, cols, el) });
    });
  }
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      charts.forEach(function (c) {
        c.plot.setSize({ width: Math.max(280, c.el.clientWidth), height: 220 });
      });
    }, 150);
  });

  function init(root) {
    applyZone(root);
    drawCharts(document);
  }
  // A deferred script runs while the document is still "interactive",
  // before the deferred scripts after it (uPlot, linked by the page's own
  // head block): drawing waits for DOMContentLoaded, which comes after
  // all of them.
  if (document.readyState === "complete") {
    init(document);
  } else {
    document.addEventListener("DOMContentLoaded", function () { init(document); });
  }
  // Content swapped in by htmx.
  document.addEventListener("htmx:load", function (e) { applyZone(e.target); });
})();
