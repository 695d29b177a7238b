// Enhancements only: every page reads the same without this file.
"use strict";

// The live state in the header: the SSE extension reports the stream opening and failing.
document.addEventListener("htmx:sseOpen", function () {
  const state = document.getElementById("live-state");
  if (state) state.textContent = "Live";
  document.body.dataset.live = "open";
});
document.addEventListener("htmx:sseError", function () {
  const state = document.getElementById("live-state");
  if (state) state.textContent = "Live updates interrupted: reconnecting";
  document.body.dataset.live = "closed";
});

// Charts: each <figure class="chart"> carries its series as JSON in a non-executed script tag
// (the table beside it shows the same figures without JavaScript).
function drawChart(figure) {
  const source = figure.querySelector("script[type='application/json']");
  const canvas = figure.querySelector(".chart-canvas");
  if (!source || !canvas || typeof uPlot === "undefined") return;
  const chart = JSON.parse(source.textContent);
  const colours = ["#1b5e9f", "#8a5a00", "#b3261e", "#2e7d32", "#6b4fa0"];
  const series = [{}].concat(chart.series.map(function (line, index) {
    return {label: line.label, stroke: line.colour || colours[index % colours.length],
            width: line.dashed ? 1 : 2, dash: line.dashed ? [6, 4] : undefined,
            points: {show: chart.x.length < 60}, spanGaps: true};
  }));
  const data = [chart.x].concat(chart.series.map(function (line) { return line.values; }));
  const width = Math.max(320, Math.min(canvas.clientWidth || 720, 960));
  canvas.textContent = "";
  new uPlot({width: width, height: 280, series: series,
             scales: {x: {time: true}}, axes: [{}, {label: chart.unit || ""}]}, data, canvas);
  figure.dataset.drawn = "true";
}

function drawCharts(root) {
  root.querySelectorAll("figure.chart").forEach(drawChart);
}

document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
document.addEventListener("htmx:afterSwap", function (event) { drawCharts(event.target); });
