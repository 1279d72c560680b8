// The dashboard's three charts (vendored Chart.js, loaded as a classic script before this module).
// Charts are created once and updated in place on every poll, without animation.

const ACCENT = "#3346c9";
const POSITIVE = "#17703a";
const NEGATIVE = "#b3261e";
const MUTED = "#545b6e";
const GRID = "#e4e7ef";

function hourLabel(iso) {
  return new Date(iso).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
}

function growthLabel(iso, spanMs) {
  const d = new Date(iso);
  if (spanMs > 36 * 3600 * 1000) return d.toLocaleDateString("en-GB", { day: "numeric", month: "short" });
  if (spanMs < 600 * 1000) return d.toLocaleTimeString("en-GB");
  return d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
}

export function makeCharts(Chart) {
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = MUTED;
  Chart.defaults.borderColor = GRID;
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.plugins.legend.labels.boxWidth = 12;

  const aph = new Chart(document.getElementById("chart-aph"), {
    type: "bar",
    data: { labels: [], datasets: [{ label: "Answers", data: [], backgroundColor: ACCENT, borderRadius: 3 }] },
    options: {
      plugins: { legend: { display: false } },
      scales: { x: { grid: { display: false }, ticks: { maxTicksLimit: 8, maxRotation: 0 } }, y: { beginAtZero: true, ticks: { precision: 0 } } },
    },
  });

  const growth = new Chart(document.getElementById("chart-growth"), {
    type: "line",
    data: {
      labels: [],
      datasets: [
        { label: "+ same", data: [], borderColor: POSITIVE, backgroundColor: POSITIVE, pointRadius: 0, borderWidth: 2, tension: 0.2 },
        { label: "− different", data: [], borderColor: NEGATIVE, backgroundColor: NEGATIVE, pointRadius: 0, borderWidth: 2, tension: 0.2 },
      ],
    },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: { x: { grid: { display: false }, ticks: { maxTicksLimit: 6, maxRotation: 0 } }, y: { beginAtZero: true, ticks: { precision: 0 } } },
    },
  });

  const quality = new Chart(document.getElementById("chart-quality"), {
    type: "line",
    data: {
      datasets: [
        { label: "kNN accuracy", data: [], borderColor: ACCENT, backgroundColor: ACCENT, pointRadius: 3, borderWidth: 2 },
        { label: "Cluster accuracy", data: [], borderColor: "#b35c00", backgroundColor: "#b35c00", pointRadius: 3, borderWidth: 2 },
      ],
    },
    options: {
      interaction: { mode: "nearest", intersect: false },
      scales: {
        x: { type: "linear", title: { display: true, text: "answers" }, ticks: { precision: 0 } },
        y: { min: 0, max: 1, ticks: { callback: (v) => `${Math.round(v * 100)} %` } },
      },
    },
  });

  return {
    update(s) {
      aph.data.labels = s.throughput.answers_per_hour.map((h) => hourLabel(h.hour));
      aph.data.datasets[0].data = s.throughput.answers_per_hour.map((h) => h.answers);
      aph.update("none");

      const points = s.graph.growth;
      const span = points.length > 1 ? Date.parse(points[points.length - 1].t) - Date.parse(points[0].t) : 0;
      growth.data.labels = points.map((p) => growthLabel(p.t, span));
      growth.data.datasets[0].data = points.map((p) => p.positive);
      growth.data.datasets[1].data = points.map((p) => p.negative);
      growth.update("none");

      quality.data.datasets[0].data = s.quality.filter((q) => q.knn_accuracy !== null)
        .map((q) => ({ x: q.answers_at_upload, y: q.knn_accuracy }));
      quality.data.datasets[1].data = s.quality.filter((q) => q.cluster_accuracy !== null)
        .map((q) => ({ x: q.answers_at_upload, y: q.cluster_accuracy }));
      quality.update("none");
    },
  };
}
