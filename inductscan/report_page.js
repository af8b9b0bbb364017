// The report's interactions. Every figure comes from Python (inductscan/report_figures.py) as
// Plotly JSON; this script only chooses which one to show and swaps data in: the metric, the run,
// the heatmap's step, the heads clicked on the heatmap. Open the page with #selftest to have it
// exercise itself and write what it saw into a <pre> element, id selftest (see tests/test_report.py).
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const config = { responsive: true, displaylogo: false };
  const MAX_CLICKED = 6;
  const element = (id) => document.getElementById(id);
  const commas = (number) => String(number).replace(/\B(?=(\d{3})+(?!\d))/g, ","); // 6144000 -> 6,144,000, in any locale
  const state = { metric: null, run: 0, step: 0, clicked: [], timer: null };

  function showMetric() {
    const figure = data.timing[state.metric];
    document.querySelectorAll(".by-metric").forEach((block) => {
      block.hidden = block.dataset.metric !== state.metric;
    });
    return Promise.all([Plotly.react("timing", figure.data, figure.layout, config), drawHeatmap(), drawHeadCurves()]);
  }

  function heatmapMetric() {
    return data.heatmap_metrics.includes(state.metric) ? state.metric : data.heatmap_metrics[0];
  }

  function xValue(run, index) {
    return data.axis === "tokens" ? run.tokens[index] : run.steps[index];
  }

  function drawHeatmap() {
    const run = data.runs[state.run];
    const metric = heatmapMetric();
    const step = run.steps[state.step];
    const base = data.heatmap;
    const trace = Object.assign({}, base.data[0], {
      z: run.grids[metric][state.step],
      zmin: data.ranges[metric][0],
      zmax: data.ranges[metric][1],
      hovertemplate: "head %{y}.%{x}<br>" + metric + " %{z:.3f}<br>step " + commas(step) + "<extra></extra>",
    });
    trace.colorbar = Object.assign({}, trace.colorbar, { title: { text: metric } });
    const layout = Object.assign({}, base.layout, {
      title: { text: metric + " of every head: " + run.label + ", step " + commas(step) },
    });
    const shown = run.steps.length < run.checkpoints ? " (" + run.steps.length + " of its " + run.checkpoints + " checkpoints)" : "";
    element("step-label").textContent =
      "step " + commas(step) + (data.axis === "tokens" ? ", " + commas(run.tokens[state.step]) + " tokens" : "") + shown;
    return Plotly.react("heatmap", [trace], layout, config);
  }

  function drawHeadCurves() {
    const run = data.runs[state.run];
    const metric = heatmapMetric();
    const kept = run.steps.map((_, index) => index).filter((index) => xValue(run, index) > 0);
    const traces = state.clicked.map(([layer, head]) => ({
      x: kept.map((index) => xValue(run, index)),
      y: kept.map((index) => run.grids[metric][index][layer][head]),
      mode: "lines+markers",
      marker: { size: 4 },
      name: "head " + layer + "." + head,
      hovertemplate: "head " + layer + "." + head + "<br>%{x:.4s} " + data.axis + "<br>" + metric + " %{y:.3f}<extra></extra>",
    }));
    const layout = Object.assign({}, data.head_curve_layout, {
      yaxis: { title: { text: metric + " (" + run.label + ")" } },
    });
    return Plotly.react("head-curve", traces, layout, config);
  }

  function clickHead(layer, head) {
    const at = state.clicked.findIndex(([l, h]) => l === layer && h === head);
    if (at >= 0) state.clicked.splice(at, 1);
    else state.clicked.push([layer, head]);
    state.clicked = state.clicked.slice(-MAX_CLICKED);
    return drawHeadCurves();
  }

  function bestHead(run) {
    const grid = run.grids[heatmapMetric()][run.steps.length - 1];
    let best = [0, 0];
    grid.forEach((row, layer) => row.forEach((value, head) => {
      if (value !== null && value > grid[best[0]][best[1]]) best = [layer, head];
    }));
    return best;
  }

  function chooseRun(index) {
    state.run = index;
    const run = data.runs[index];
    const slider = element("step-slider");
    slider.max = run.steps.length - 1;
    state.step = run.steps.length - 1;
    slider.value = state.step;
    state.clicked = [bestHead(run)];
    const draws = [drawHeatmap(), drawHeadCurves()];
    if (data.icl) {
      const figure = data.icl[index];
      element("icl-note").textContent = figure ? "" : "no ICL curves for " + run.label;
      element("icl").hidden = !figure; // no empty chart's height under the note
      draws.push(figure ? Plotly.react("icl", figure.data, figure.layout, config) : Plotly.purge("icl"));
    }
    return Promise.all(draws);
  }

  function play() {
    const button = element("play");
    if (state.timer) {
      clearInterval(state.timer);
      state.timer = null;
      button.textContent = "play";
      return;
    }
    if (state.step >= data.runs[state.run].steps.length - 1) state.step = 0;
    button.textContent = "pause";
    state.timer = setInterval(() => {
      const last = data.runs[state.run].steps.length - 1;
      state.step = Math.min(state.step + 1, last);
      element("step-slider").value = state.step;
      drawHeatmap();
      if (state.step === last) play();
    }, 250);
  }

  // The token-loss section (inductscan/report_token_losses.py), on a page of a scan with
  // --token-losses: the scatter's slider swaps that step's points in, the run selector the curves.
  function drawTokenScatter(index) {
    const scatter = data.token_losses.scatter;
    const base = scatter.figure;
    const points = Object.assign({}, base.data[0], { x: scatter.x[index], y: scatter.y[index] });
    const outliers = Object.assign({}, base.data[1], scatter.outliers[index]);
    const layout = Object.assign({}, base.layout, { title: Object.assign({}, base.layout.title, { text: scatter.titles[index] }) });
    element("token-step-label").textContent = "step " + commas(scatter.steps[index]);
    return Plotly.react("token-scatter", [points, outliers].concat(base.data.slice(2)), layout, config);
  }

  function drawTokenCurves(index) {
    const figure = data.token_losses.curves.runs[index].figure;
    return Plotly.react("token-curves", figure.data, figure.layout, config);
  }

  function drawTokenLosses() {
    const tokens = data.token_losses;
    const draws = [];
    if (tokens.scatter.figure) {
      const slider = element("token-step-slider");
      slider.addEventListener("input", (event) => drawTokenScatter(Number(event.target.value)));
      draws.push(drawTokenScatter(Number(slider.value)));
    }
    if (tokens.curves.runs) {
      element("token-run-select").addEventListener("change", (event) => drawTokenCurves(Number(event.target.value)));
      draws.push(drawTokenCurves(0));
    }
    if (tokens.pca.figure) draws.push(Plotly.newPlot("token-pca", tokens.pca.figure.data, tokens.pca.figure.layout, config));
    return Promise.all(draws);
  }

  // #selftest of the token-loss section: what each chart drew, then the slider at the first step and
  // the last run's curves.
  async function tokenSelftest(report) {
    const drawn = (id) => (element(id) && element(id).data ? {
      traces: element(id).data.length,
      points: element(id).querySelectorAll(".scatterlayer .point").length,
      lines: element(id).querySelectorAll(".scatterlayer .js-line").length,
      title: element(id).layout.title.text,
    } : null);
    const tokens = { scatter: drawn("token-scatter"), curves: drawn("token-curves"), pca: drawn("token-pca") };
    if (tokens.scatter) {
      const slider = element("token-step-slider");
      tokens.scatter_step_label = element("token-step-label").textContent;
      tokens.scatter_x_before = element("token-scatter").data[0].x;
      slider.value = 0;
      slider.dispatchEvent(new Event("input"));
      await new Promise((resolve) => setTimeout(resolve, 50));
      tokens.scatter_x_after = element("token-scatter").data[0].x;
      tokens.scatter_title_after = element("token-scatter").layout.title.text;
      tokens.scatter_step_label_after = element("token-step-label").textContent;
    }
    if (tokens.curves) {
      const select = element("token-run-select");
      select.value = String(data.token_losses.curves.runs.length - 1);
      select.dispatchEvent(new Event("change"));
      await new Promise((resolve) => setTimeout(resolve, 50));
      tokens.curves_title_after = element("token-curves").layout.title.text;
    }
    report.token_losses = tokens;
  }

  function sortable(table) {
    table.querySelectorAll("th").forEach((header, column) => {
      header.addEventListener("click", () => {
        const ascending = header.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("th").forEach((other) => other.removeAttribute("aria-sort"));
        header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const body = table.tBodies[0];
        const key = (row) => {
          const cell = row.cells[column];
          const sort = cell.dataset.sort;
          return sort === undefined ? cell.textContent : sort === "" ? null : Number(sort);
        };
        const rows = Array.from(body.rows).sort((a, b) => {
          const x = key(a), y = key(b);
          if (x === null || y === null) return x === y ? 0 : x === null ? 1 : -1; // missing values last
          const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
          return ascending ? order : -order;
        });
        rows.forEach((row) => body.appendChild(row));
      });
    });
  }

  function start() {
    document.querySelectorAll("table.sortable").forEach(sortable);
    if (data === null) {
      element("charts").hidden = true;
      return Promise.resolve();
    }
    state.metric = data.metrics[0].name;
    element("metric-select").addEventListener("change", (event) => {
      state.metric = event.target.value;
      showMetric();
    });
    element("run-select").addEventListener("change", (event) => chooseRun(Number(event.target.value)));
    element("step-slider").addEventListener("input", (event) => {
      state.step = Number(event.target.value);
      drawHeatmap();
    });
    element("play").addEventListener("click", play);
    element("per-head-note").textContent = data.per_head_note;
    if (!data.icl) {
      element("icl-note").textContent = "no ICL curves: scan with --icl-dataset to see loss by token position";
      element("icl").hidden = true;
    }
    element("per-head").hidden = !data.per_head;
    const draws = [chooseRun(0).then(showMetric)];
    if (data.per_head) draws.push(Plotly.newPlot("per-head", data.per_head.data, data.per_head.layout, config));
    if (data.token_losses) draws.push(drawTokenLosses());
    return Promise.all(draws).then(() => {
      element("heatmap").on("plotly_click", (event) => {
        const point = event.points[0];
        clickHead(point.y, point.x);
      });
    });
  }

  // #selftest: move the slider, click a head, sort a table, choose a metric and a run, and report it
  // all with any errors.
  async function selftest(started) {
    const report = { ready_ms: performance.now(), script_ms: performance.now() - started, errors: window.reportErrors };
    const paint = performance.getEntriesByType("paint").find((entry) => entry.name === "first-contentful-paint");
    report.first_contentful_paint_ms = paint ? paint.startTime : null;
    report.charts = document.querySelectorAll(".js-plotly-plot").length;
    report.svg = document.querySelectorAll(".main-svg").length;
    report.hidden_charts = Array.from(document.querySelectorAll(".chart[hidden]")).map((chart) => chart.id);
    report.pattern_widths = Array.from(document.querySelectorAll("img.pattern")).map((image) => image.naturalWidth);
    if (data !== null) {
      const heatmap = element("heatmap");
      const slider = element("step-slider");
      report.z_before = heatmap.data[0].z;
      report.step_label_before = element("step-label").textContent;
      slider.value = 0;
      slider.dispatchEvent(new Event("input"));
      await new Promise((resolve) => setTimeout(resolve, 50));
      report.z_after = heatmap.data[0].z;
      report.step_label_after = element("step-label").textContent;
      report.curves_before_click = element("head-curve").data.length;
      heatmap.emit("plotly_click", { points: [{ x: 0, y: 0 }] });
      await new Promise((resolve) => setTimeout(resolve, 50));
      report.curves_after_click = element("head-curve").data.length;
      report.timing_traces = element("timing").data.length;
      const header = document.querySelector(".by-metric:not([hidden]) table.sortable th:nth-child(5)");
      if (header) {
        header.click();
        report.sorted_column = header.textContent;
        report.sorted_keys = Array.from(header.closest("table").tBodies[0].rows).map((row) => row.cells[4].dataset.sort);
      }
      const choose = async (id, value) => {
        element(id).value = value;
        element(id).dispatchEvent(new Event("change"));
        await new Promise((resolve) => setTimeout(resolve, 50));
      };
      const last = data.metrics[data.metrics.length - 1].name;
      await choose("metric-select", last);
      report.metric_chosen = last;
      report.timing_title = element("timing").layout.title.text;
      report.tables_shown = Array.from(document.querySelectorAll(".by-metric:not([hidden])")).map((block) => block.dataset.metric);
      await choose("run-select", String(data.runs.length - 1));
      report.heatmap_title = heatmap.layout.title.text;
    }
    if (data !== null && data.token_losses) await tokenSelftest(report);
    const out = document.createElement("pre");
    out.id = "selftest";
    out.textContent = JSON.stringify(report);
    document.body.appendChild(out);
  }

  const started = performance.now();
  start().then(() => {
    if (location.hash === "#selftest") return selftest(started);
  });
})();
