/* Trellis dashboard: the little JavaScript the pages need beyond htmx.
 *
 * - fleet page: two ECharts overviews, fed by the JSON that arrives with every
 *   htmx poll of the table (one request per page, not per device);
 * - device page: one uPlot chart per metric, seeded from the page's JSON and
 *   extended live from the device's server-sent event stream;
 * - alert lists: reloaded through htmx when the stream reports an alert change;
 * - alert page: a uPlot chart of the readings around the alert, raise/clear marked;
 * - metrics page: ECharts trends of MTTA, MTTR, false alert rate and HITL ratio.
 *
 * Every part checks that its library is loaded: without `make assets` the pages
 * still render (with a banner) and this script does nothing harmful.
 */
(function () {
  "use strict";

  var trellis = (window.trellis = window.trellis || {});

  function json(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  /* Same rule as trellis.ui.views.format_value. */
  function formatValue(v) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    if (Number.isInteger(v)) return String(v);
    var m = Math.abs(v);
    return v.toFixed(m >= 100 ? 0 : m >= 10 ? 1 : 2);
  }
  trellis.formatValue = formatValue;

  function flash(message) {
    var el = document.getElementById("flash");
    if (!el) return;
    el.textContent = message;
    el.hidden = false;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(function () { el.hidden = true; }, 6000);
  }

  /* -- live streams and fragment refresh ------------------------------------ */

  var refreshTimer = null;

  /* Whether someone is working inside a fragment: a sheet open, a field focused.
     Replacing it then would close the sheet and drop a half-typed comment. */
  function busy(el) {
    var active = document.activeElement;
    return !!el.querySelector("details[open]") ||
      (active && active !== document.body && el.contains(active) &&
       (active.tagName === "TEXTAREA" || active.tagName === "INPUT" || active.tagName === "SELECT"));
  }

  /* Reload every [data-refresh] fragment, at most once per 300 ms burst; a busy
     fragment is reloaded once the operator is done with it (checked every second). */
  function refreshFragments() {
    if (!window.htmx) return;
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(function () {
      var waiting = false;
      document.querySelectorAll("[data-refresh]").forEach(function (el) {
        if (busy(el)) { waiting = true; return; }
        window.htmx.ajax("GET", el.dataset.refresh, { target: el, swap: "innerHTML" });
      });
      if (waiting) refreshTimer = setTimeout(refreshFragments, 1000);
    }, 300);
  }
  trellis.refreshFragments = refreshFragments;

  /* A reload that was already on its way when the operator opened a sheet waits too. */
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (target && target.dataset && target.dataset.refresh && busy(target)) {
      event.detail.shouldSwap = false;
      refreshFragments();
    }
  });

  function openStream(url, handlers) {
    if (!window.EventSource) return null;
    var source = new EventSource(url);
    var opened = 0;
    source.addEventListener("open", function () {
      opened += 1;
      // After a reconnection, events may have been missed: reload what they update.
      if (opened > 1) refreshFragments();
    });
    Object.keys(handlers).forEach(function (name) {
      source.addEventListener(name, function (event) { handlers[name](JSON.parse(event.data)); });
    });
    window.addEventListener("pagehide", function () { source.close(); });
    return source;
  }

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    flash("The server refused that (" + xhr.status + "). Reload the page and try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    flash("The server cannot be reached. Check the connection; the page retries.");
  });

  /* -- fleet page: ECharts overviews ----------------------------------------- */

  var SEVERITY_COLORS = {
    critical: "#b42318", major: "#c4450c", minor: "#b07a06",
    warning: "#2e62b8", indeterminate: "#6b7280"
  };

  function fleetCharts() {
    var sevEl = document.getElementById("chart-severity");
    var rateEl = document.getElementById("chart-rate");
    if (!sevEl || !rateEl || !window.echarts) return;
    var textStyle = { color: "#1b1f24", fontSize: 12 };
    var sev = window.echarts.init(sevEl, null, { renderer: "canvas" });
    var rate = window.echarts.init(rateEl, null, { renderer: "canvas" });
    var history = [];
    sev.setOption({
      animationDuration: 300,
      textStyle: textStyle,
      grid: { left: 92, right: 24, top: 8, bottom: 24 },
      xAxis: { type: "value", minInterval: 1, axisLabel: textStyle },
      yAxis: { type: "category", inverse: true, data: [], axisLabel: textStyle },
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      series: [{ type: "bar", data: [], barMaxWidth: 22, label: { show: true, position: "right" } }]
    });
    rate.setOption({
      animation: false,
      textStyle: textStyle,
      grid: { left: 56, right: 16, top: 12, bottom: 28 },
      xAxis: { type: "time", axisLabel: textStyle, splitNumber: 3 },
      yAxis: { type: "value", min: 0, axisLabel: textStyle },
      tooltip: { trigger: "axis" },
      series: [{
        type: "line", name: "readings/s", showSymbol: false, data: [],
        lineStyle: { color: "#1e56b0", width: 2 }, areaStyle: { color: "rgba(30,86,176,0.10)" }
      }]
    });

    function update() {
      var data = json("fleet-data");
      if (!data) return;
      sev.setOption({
        yAxis: { data: data.severities },
        series: [{
          data: data.open_by_severity.map(function (n, i) {
            return { value: n, itemStyle: { color: SEVERITY_COLORS[data.severities[i]] || "#6b7280" } };
          })
        }]
      });
      history.push([data.at, data.readings_per_s]);
      if (history.length > 120) history.shift();
      rate.setOption({ series: [{ data: history.slice() }] });
    }

    update();
    document.body.addEventListener("htmx:afterSettle", function (event) {
      if (event.target && event.target.id === "fleet-live") update();
    });
    window.addEventListener("resize", function () { sev.resize(); rate.resize(); });
    trellis.fleetCharts = { severity: sev, rate: rate, history: history };
  }

  /* -- device page: uPlot live charts ------------------------------------------ */

  function chartOptions(series, width) {
    var unit = series.unit ? " " + series.unit : "";
    return {
      width: width,
      height: 200,
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      series: [
        {},
        {
          label: series.metric,
          stroke: "#1e56b0",
          width: 1.5,
          fill: "rgba(30,86,176,0.08)",
          points: { show: false },
          value: function (u, v) { return v === null || v === undefined ? "–" : formatValue(v) + unit; }
        }
      ],
      axes: [
        { stroke: "#1b1f24", grid: { stroke: "#e6e9ed" }, ticks: { stroke: "#d5dae0" } },
        {
          stroke: "#1b1f24", size: 56, grid: { stroke: "#e6e9ed" }, ticks: { stroke: "#d5dae0" },
          values: function (u, vals) { return vals.map(formatValue); }
        }
      ]
    };
  }

  function deviceCharts() {
    var cfg = json("device-data");
    if (!cfg) return;
    var charts = {};
    var windowMs = cfg.window_ms;
    var maxPoints = cfg.max_points;
    var pending = false;

    cfg.series.forEach(function (s) {
      var box = null;
      document.querySelectorAll("[data-metric]").forEach(function (el) {
        if (el.dataset.metric === s.metric) box = el;
      });
      if (!box) return;
      var target = box.querySelector(".chart-target");
      var entry = {
        box: box,
        target: target,
        xs: s.ts.map(function (t) { return t / 1000; }),
        ys: s.values.slice(),
        last: s.ts.length ? s.ts[s.ts.length - 1] : -Infinity,
        plot: null,
        received: 0
      };
      if (window.uPlot) {
        entry.plot = new window.uPlot(chartOptions(s, target.clientWidth || 320), [entry.xs, entry.ys], target);
      }
      charts[s.metric] = entry;
    });
    trellis.charts = charts;

    function draw() {
      pending = false;
      Object.keys(charts).forEach(function (metric) {
        var c = charts[metric];
        if (c.plot && c.dirty) c.plot.setData([c.xs, c.ys]);
        c.dirty = false;
        c.box.dataset.points = String(c.xs.length);
      });
    }

    function setLatest(metric, value) {
      document.querySelectorAll("[data-latest]").forEach(function (el) {
        if (el.dataset.latest !== metric) return;
        var b = el.querySelector("b");
        if (b) b.textContent = formatValue(value);
      });
    }

    function onReadings(byMetric) {
      var newest = -Infinity;
      Object.keys(byMetric).forEach(function (metric) {
        var c = charts[metric];
        var points = byMetric[metric];
        if (!c) return;
        points.forEach(function (p) {
          if (p[0] <= c.last) return; // already drawn (seed, backfill, reconnection)
          c.xs.push(p[0] / 1000);
          c.ys.push(p[1]);
          c.last = p[0];
          c.received += 1;
          c.dirty = true;
        });
        var cutoff = (c.last - windowMs) / 1000;
        var drop = 0;
        while (drop < c.xs.length && (c.xs[drop] < cutoff || c.xs.length - drop > maxPoints)) drop++;
        if (drop) { c.xs.splice(0, drop); c.ys.splice(0, drop); }
        if (points.length) {
          var p = points[points.length - 1];
          setLatest(metric, p[1]);
          newest = Math.max(newest, p[0]);
        }
      });
      if (newest > -Infinity) {
        var seen = document.getElementById("last-seen");
        if (seen) {
          seen.textContent = new Date(newest).toLocaleTimeString();
          seen.title = new Date(newest).toISOString();
        }
      }
      if (!pending) { pending = true; window.requestAnimationFrame(draw); }
    }

    if (window.ResizeObserver) {
      var ro = new window.ResizeObserver(function () {
        Object.keys(charts).forEach(function (metric) {
          var c = charts[metric];
          if (c.plot && c.target.clientWidth) c.plot.setSize({ width: c.target.clientWidth, height: 200 });
        });
      });
      Object.keys(charts).forEach(function (metric) { ro.observe(charts[metric].target); });
    }

    openStream(cfg.stream, { readings: onReadings, alert: refreshFragments });
  }

  /* -- alert inbox --------------------------------------------------------------- */

  function alertInbox() {
    var list = document.querySelector("[data-alert-stream]");
    if (!list) return;
    openStream(list.dataset.alertStream, { alert: refreshFragments });
  }

  /* -- alert page: the readings around the alert (uPlot) ---------------------- */

  function alertChart() {
    var cfg = json("alert-data");
    var box = document.getElementById("alert-chart");
    if (!cfg || !cfg.series || !box || !window.uPlot) return;
    var target = box.querySelector(".chart-target");
    var s = cfg.series;
    var opts = chartOptions(s, target.clientWidth || 320);
    opts.scales.x.range = function () { return [cfg.window[0] / 1000, cfg.window[1] / 1000]; };
    opts.hooks = {
      draw: [function (u) {
        var ctx = u.ctx;
        ctx.save();
        cfg.marks.forEach(function (m) {
          var x = u.valToPos(m.ts / 1000, "x", true);
          ctx.strokeStyle = m.label === "raised" ? "#b42318" : "#14532d";
          ctx.setLineDash([4, 4]);
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
        });
        ctx.restore();
      }]
    };
    var xs = s.ts.map(function (t) { return t / 1000; });
    trellis.alertChart = new window.uPlot(opts, [xs, s.values], target);
  }

  /* -- metrics page: ECharts trends --------------------------------------------- */

  function metricsCharts() {
    var data = json("metrics-data");
    if (!data || !window.echarts) return;
    var textStyle = { color: "#1b1f24", fontSize: 12 };
    var days = data.days.map(function (d) { return new Date(d).toISOString().slice(5, 10); });
    function minutes(xs) { return xs.map(function (v) { return v === null ? null : +(v / 60).toFixed(2); }); }
    function percent(xs) { return xs.map(function (v) { return v === null ? null : +(v * 100).toFixed(1); }); }
    function line(id, series, yName) {
      var el = document.getElementById(id);
      if (!el) return null;
      var chart = window.echarts.init(el, null, { renderer: "canvas" });
      chart.setOption({
        animation: false,
        textStyle: textStyle,
        legend: { top: 0, textStyle: textStyle },
        grid: { left: 48, right: 16, top: 32, bottom: 28 },
        tooltip: { trigger: "axis" },
        xAxis: { type: "category", data: days, axisLabel: textStyle },
        yAxis: { type: "value", name: yName, min: 0, axisLabel: textStyle },
        series: series.map(function (s) {
          return { type: "line", name: s[0], data: s[1], connectNulls: true, symbolSize: 6 };
        })
      });
      return chart;
    }
    var charts = [
      line("chart-times", [["MTTA", minutes(data.mtta_s)], ["MTTR", minutes(data.mttr_s)]], "min"),
      line("chart-rates", [["false alert rate", percent(data.false_alert_rate)],
                           ["HITL resolution", percent(data.hitl)]], "%")
    ];
    var rulesEl = document.getElementById("chart-rules");
    if (rulesEl) {
      var rules = window.echarts.init(rulesEl, null, { renderer: "canvas" });
      rules.setOption({
        animation: false,
        textStyle: textStyle,
        legend: { top: 0, textStyle: textStyle },
        grid: { left: 110, right: 16, top: 32, bottom: 24 },
        tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
        xAxis: { type: "value", minInterval: 1, axisLabel: textStyle },
        yAxis: { type: "category", inverse: true, data: data.rules, axisLabel: textStyle },
        series: [
          { type: "bar", name: "alerts", data: data.rule_alerts, itemStyle: { color: "#1e56b0" } },
          { type: "bar", name: "false positives", data: data.rule_false, itemStyle: { color: "#c4450c" } }
        ]
      });
      charts.push(rules);
    }
    window.addEventListener("resize", function () {
      charts.forEach(function (c) { if (c) c.resize(); });
    });
    trellis.metricsCharts = charts;
  }

  function start() {
    fleetCharts();
    deviceCharts();
    alertInbox();
    alertChart();
    metricsCharts();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
