// The rule page: the dry run's readings per device with raise/clear marks (ECharts).
"use strict";

(function () {
  const el = document.getElementById("chart-dry-run");
  const data = document.getElementById("dry-run-data");
  if (!el || !data || !window.echarts) return;
  const result = JSON.parse(data.textContent);
  const chart = window.echarts.init(el, null, { renderer: "canvas" });
  const series = result.series.map((s) => {
    const marks = result.signals.filter((x) => x.device === s.device && x.value !== null);
    return {
      name: s.device,
      type: "line",
      showSymbol: false,
      data: s.points,
      markPoint: {
        data: marks.map((x) => ({
          coord: [x.ts, x.value],
          symbol: "triangle",
          symbolRotate: x.kind === "raise" ? 0 : 180,
          symbolSize: 12,
          itemStyle: { color: x.kind === "raise" ? "#b3261e" : "#2e7d32" },
          value: x.kind,
        })),
        label: { show: false },
      },
    };
  });
  chart.setOption({
    animation: false,
    tooltip: { trigger: "axis" },
    legend: { type: "scroll", bottom: 0 },
    grid: { left: 48, right: 16, top: 16, bottom: 40 },
    xAxis: { type: "time", min: result.start, max: result.end },
    yAxis: { type: "value", name: result.metric, scale: true },
    series,
  });
  el.dataset.series = String(series.length);
  el.dataset.marks = String(series.reduce((n, s) => n + s.markPoint.data.length, 0));
  new ResizeObserver(() => chart.resize()).observe(el);
})();
