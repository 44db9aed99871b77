// SPDX-License-Identifier: Apache-2.0
//
// The dashboard page's code: polls /api/dashboard.json every second and
// draws the graph's state counts, the workers, the launcher's units, the task stream (Chart.js
// floating bars, one row per worker, one colour per function) and
// progress bars per function. Every string from the scheduler (task keys,
// names) goes into the page as text, never as HTML.
'use strict';

(function () {
  const POLL_MS = 1000;
  const STATES = ['waiting', 'ready', 'processing', 'memory', 'erred', 'cancelled', 'forgotten'];
  const PALETTE = ['#0969da', '#2da44e', '#8250df', '#bf8700', '#1b7c83', '#bc4c00',
    '#4d2d8c', '#116329', '#953800', '#0550ae'];
  const state = { last: null, polls: 0, chart: null, colours: new Map() };
  window.tgDashboard = state; // for people and tests poking at the page

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  function bytes(n) {
    if (!n) return '0 B';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + ' ' + u[i];
  }

  function colour(func) {
    if (!state.colours.has(func)) {
      state.colours.set(func, PALETTE[state.colours.size % PALETTE.length]);
    }
    return state.colours.get(func);
  }

  function drawCounts(d) {
    const box = document.getElementById('counts');
    box.replaceChildren();
    for (const s of STATES) {
      const cell = el('div', 'count-cell ' + s);
      cell.append(el('b', null, d.counts[s]), el('span', null, s));
      box.append(cell);
    }
    if (d.unplaceable) {
      const cell = el('div', 'count-cell erred');
      cell.append(el('b', null, d.unplaceable), el('span', null, 'unplaceable'));
      box.append(cell);
    }
  }

  function drawWorkers(d) {
    const body = document.querySelector('#workers tbody');
    body.replaceChildren();
    for (const w of d.workers) {
      const tr = el('tr');
      tr.append(el('td', 'worker-name', w.name), el('td', null, w.threads),
        el('td', null, w.processing), el('td', null, bytes(w.memory)),
        el('td', null, w.memory_limit ? bytes(w.memory_limit) : 'none'),
        el('td', null, bytes(w.spilled)), el('td', null, bytes(w.rss)),
        el('td', w.paused ? 'paused' : null, w.paused ? 'yes' : 'no'));
      body.append(tr);
    }
    document.getElementById('nworkers').textContent = '(' + d.workers.length + ')';
  }

  // The launcher (local processes, Slurm jobs, SSH hosts) and its units;
  // hidden when the scheduler has none.
  function drawLauncher(d) {
    const section = document.getElementById('launcher-section');
    const l = d.launcher;
    section.hidden = !l;
    if (!l) return;
    document.getElementById('launcher-summary').textContent =
      '(' + l.kind + ': ' + l.active + ' of ' + l.target + ' workers, ' +
      l.failures + ' failed starts)';
    const err = document.getElementById('launcher-error');
    err.hidden = !l.last_error;
    err.textContent = l.last_error ? 'last failure: ' + l.last_error : '';
    const body = document.querySelector('#units tbody');
    body.replaceChildren();
    for (const u of l.units) {
      const tr = el('tr');
      tr.append(el('td', 'unit-id', u.id), el('td', 'unit-' + u.state, u.state),
        el('td', null, u.where), el('td', null, u.workers), el('td', null, u.connected));
      body.append(tr);
    }
  }

  function drawProgress(d) {
    const box = document.getElementById('progress');
    const total = (f) => STATES.reduce((n, s) => n + f[s], 0);
    const funcs = d.functions.filter((f) => total(f) > 0)
      .sort((a, b) => a.name.localeCompare(b.name));
    box.replaceChildren();
    for (const f of funcs) {
      const all = total(f);
      const done = f.memory + f.erred + f.forgotten + f.cancelled;
      const row = el('div', 'progress-row');
      const bar = el('div', 'bar');
      for (const s of ['memory', 'erred', 'processing', 'ready', 'waiting']) {
        const part = s === 'memory' ? f.memory + f.forgotten : f[s];
        if (!part) continue;
        const seg = el('span', 'seg-' + s);
        seg.style.width = (100 * part / all) + '%';
        seg.title = s + ': ' + part;
        bar.append(seg);
      }
      row.append(el('div', 'progress-name', f.name), bar,
        el('div', 'progress-text', done + ' / ' + all));
      box.append(row);
    }
  }

  // One row per worker thread, as runs overlap: each run takes the first
  // row of its worker free at its start.
  function lanes(d) {
    const rows = [];
    const ends = new Map();
    const order = d.workers.map((w) => w.name);
    const runs = d.stream.slice().sort((a, b) => a[3] - b[3]);
    for (const r of runs) {
      if (!ends.has(r[2])) { ends.set(r[2], []); if (!order.includes(r[2])) order.push(r[2]); }
      const e = ends.get(r[2]);
      let i = e.findIndex((end) => end <= r[3]);
      if (i < 0) { i = e.length; e.push(0); }
      e[i] = r[4];
      r.lane = r[2] + ' #' + (i + 1);
    }
    for (const w of order) {
      const n = ends.has(w) ? ends.get(w).length : 1;
      for (let i = 0; i < n; i++) rows.push(w + ' #' + (i + 1));
    }
    return { rows: rows, runs: runs };
  }

  function drawStream(d) {
    const { rows: workers, runs } = lanes(d);
    const byFunc = new Map();
    for (const r of runs) {
      const [key, func, , start, stop, erred] = r;
      if (!byFunc.has(func)) byFunc.set(func, []);
      byFunc.get(func).push({ x: [start, stop], y: r.lane, key: key, erred: erred });
    }
    const datasets = [];
    for (const [func, points] of byFunc) {
      datasets.push({
        label: func, data: points, grouped: false, borderSkipped: false, minBarLength: 2,
        borderWidth: 1, borderColor: '#ffffff',
        backgroundColor: points.map((p) => (p.erred ? '#cf222e' : colour(func))),
        barPercentage: 0.8, categoryPercentage: 1,
      });
    }
    document.getElementById('stream-count').textContent =
      '(' + d.stream.length + ' of ' + d.stream_total + ' runs)';
    if (typeof Chart === 'undefined') return;
    if (state.chart === null) {
      state.chart = new Chart(document.getElementById('stream'), {
        type: 'bar',
        data: { labels: workers, datasets: datasets },
        options: {
          indexAxis: 'y', animation: false, responsive: true, maintainAspectRatio: false,
          parsing: { xAxisKey: 'x', yAxisKey: 'y' },
          scales: {
            x: { type: 'linear', title: { display: true, text: 'seconds ago' },
              ticks: { callback: (v) => (-v).toFixed(1) } },
            y: { type: 'category' },
          },
          plugins: {
            legend: { position: 'bottom' },
            tooltip: {
              callbacks: {
                label: (c) => c.raw.key + ' (' + c.dataset.label + ', ' +
                  ((c.raw.x[1] - c.raw.x[0]) * 1000).toFixed(2) + ' ms' +
                  (c.raw.erred ? ', erred' : '') + ')',
              },
            },
          },
        },
      });
    } else {
      state.chart.data.labels = workers;
      state.chart.data.datasets = datasets;
      state.chart.update('none');
    }
  }

  function draw(d) {
    document.getElementById('version').textContent = d.version;
    drawCounts(d);
    drawWorkers(d);
    drawLauncher(d);
    drawProgress(d);
    drawStream(d);
  }

  function setStatus(text, bad) {
    const s = document.getElementById('status');
    s.textContent = text;
    s.className = bad ? 'status bad' : 'status';
  }

  async function poll() {
    try {
      const r = await fetch('/api/dashboard.json', { cache: 'no-store' });
      if (!r.ok) {
        setStatus('scheduler answered ' + r.status + ': ' + (await r.text()).trim(), true);
      } else {
        const d = await r.json();
        state.last = d;
        state.polls++;
        draw(d);
        setStatus('live, updated ' + new Date().toLocaleTimeString(), false);
      }
    } catch (e) {
      setStatus('scheduler unreachable (' + e.message + ')', true);
    }
    setTimeout(poll, POLL_MS);
  }

  poll();
}());
