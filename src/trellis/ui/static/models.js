/* Model page charts: mean score per version over time, and drift histograms. */
(function () {
  "use strict";
  var textStyle = { color: "#1b1f24", fontSize: 12 };

  function scores(data) {
    var el = document.getElementById("chart-scores");
    if (!el) return null;
    var chart = window.echarts.init(el, null, { renderer: "canvas" });
    chart.setOption({
      animation: false,
      textStyle: textStyle,
      legend: { top: 0, textStyle: textStyle },
      grid: { left: 56, right: 16, top: 32, bottom: 28 },
      tooltip: { trigger: "axis" },
      xAxis: { type: "time", axisLabel: textStyle },
      yAxis: { type: "value", scale: true, name: "score", axisLabel: textStyle },
      series: Object.keys(data.series).map(function (version) {
        return { type: "line", name: version, data: data.series[version], symbolSize: 4 };
      })
    });
    return chart;
  }

  function drift(data) {
    var el = document.getElementById("chart-drift");
    if (!el || !data.drift.length) return null;
    var chart = window.echarts.init(el, null, { renderer: "canvas" });
    var n = data.drift.length;
    var grids = [], xs = [], ys = [], series = [];
    data.drift.forEach(function (f, i) {
      var left = (i * 100 / n + 2) + "%";
      var width = (100 / n - 4) + "%";
      var bins = f.reference.map(function (_, b) {
        return b === 0 ? "< " + f.edges[0].toPrecision(3) : "≥ " + f.edges[b - 1].toPrecision(3);
      });
      grids.push({ left: left, width: width, top: 40, bottom: 36 });
      xs.push({ type: "category", gridIndex: i, data: bins, name: f.feature, nameLocation: "middle",
                nameGap: 22, axisLabel: { show: false } });
      ys.push({ type: "value", gridIndex: i, max: 1, axisLabel: { show: i === 0 } });
      series.push({ type: "bar", name: "reference", xAxisIndex: i, yAxisIndex: i, data: f.reference,
                    itemStyle: { color: "#1e56b0" } });
      series.push({ type: "bar", name: "current", xAxisIndex: i, yAxisIndex: i, data: f.current,
                    itemStyle: { color: f.drifted ? "#c4450c" : "#5b8f29" } });
    });
    chart.setOption({
      animation: false, textStyle: textStyle, legend: { top: 0, textStyle: textStyle },
      tooltip: { trigger: "axis" }, grid: grids, xAxis: xs, yAxis: ys, series: series
    });
    return chart;
  }

  function start() {
    var el = document.getElementById("model-data");
    if (!el || !window.echarts) return;
    var data = JSON.parse(el.textContent);
    var charts = [scores(data), drift(data)];
    window.addEventListener("resize", function () {
      charts.forEach(function (c) { if (c) c.resize(); });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
