// Live metrics: one tile per figure with a sparkline, fed by the snapshots Royal publishes on
// the `metrics` topic every metrics_interval_seconds. The history survives a reload of the
// page (sessionStorage), so charts do not start empty each time.

import { Sparkline } from "./charts.js";
import { number } from "./format.js";

const HISTORY_KEY = "royal.metrics.history";
const CAPACITY = 90;

// Each tile: its value, an optional detail line, and its chart colour.
const TILES = {
  requests: {
    value: (s) => number(s.requests_per_second, 1),
    detail: (s) => `${number(s.errors_per_second, 1)} 5xx/s · ${number(s.requests_total)} total`,
    chart: (s) => s.requests_per_second,
    color: "#4aa3ff",
  },
  latency: {
    value: (s) => number(s.latency_ms?.p99, 1),
    detail: (s) => (s.latency_ms?.p50 == null ? "no requests lately" : `p50 ${number(s.latency_ms.p50, 1)} ms`),
    chart: (s) => s.latency_ms?.p99,
    color: "#d2a8ff",
  },
  streams: {
    value: (s) => number(s.sse_open + s.ws_open),
    detail: (s) => `SSE ${number(s.sse_open)} · WS ${number(s.ws_open)}`,
    chart: (s) => s.sse_open + s.ws_open,
    color: "#3fb950",
  },
  queue: {
    value: (s) => number(s.jobs?.queued),
    detail: (s) => `${number(s.jobs?.running)} running`,
    chart: (s) => s.jobs?.queued,
    color: "#e3b341",
  },
  sessions: {
    value: (s) => number(s.active_sessions),
    detail: () => "used in the last minute",
    chart: (s) => s.active_sessions,
    color: "#79c0ff",
  },
  alerts: {
    value: (s) => number(s.alerts_active),
    detail: () => "not expired",
    chart: (s) => s.alerts_active,
    color: "#f85149",
  },
};

export class MetricsPanel {
  constructor(root, { workers, age }) {
    this.workers = workers;
    this.age = age;
    this.latest = null;
    this.tiles = Object.entries(TILES).map(([key, spec]) => {
      const element = root.querySelector(`[data-metric="${key}"]`);
      const canvas = element.querySelector('[data-role="chart"]');
      return {
        spec,
        value: element.querySelector('[data-role="value"]'),
        detail: element.querySelector('[data-role="detail"]'),
        chart: new Sparkline(canvas, { capacity: CAPACITY, color: spec.color }),
      };
    });
    this.agent = root.querySelector('[data-metric="agent"]');
    this.history = this.restore();
    this.history.forEach((snapshot) => this.plot(snapshot));
    if (this.history.length) this.show(this.history.at(-1));
    setInterval(() => this.showAge(), 1000);
  }

  // One snapshot from the stream. A reconnect delivers the newest again: skip what we have.
  receive(snapshot) {
    if (this.latest && snapshot.at <= this.latest.at) return;
    this.history.push(snapshot);
    this.history.splice(0, Math.max(0, this.history.length - CAPACITY));
    this.save();
    this.plot(snapshot);
    this.show(snapshot);
  }

  plot(snapshot) {
    for (const tile of this.tiles) tile.chart.push(tile.spec.chart(snapshot));
  }

  show(snapshot) {
    this.latest = snapshot;
    for (const tile of this.tiles) {
      tile.value.textContent = tile.spec.value(snapshot);
      tile.detail.textContent = tile.spec.detail(snapshot);
    }
    const open = snapshot.agent_circuit_open;
    this.agent.dataset.state = open ? "bad" : "ok";
    this.agent.querySelector('[data-role="value"]').textContent = open ? "circuit open" : "healthy";
    this.workers.textContent = `${snapshot.workers} worker${snapshot.workers === 1 ? "" : "s"}`;
    this.showAge();
  }

  // Server time of the newest snapshot against ours: stale after three missed intervals.
  showAge() {
    if (!this.latest) return;
    const seconds = Math.max(0, Math.round(Date.now() / 1000 - this.latest.at));
    const interval = this.history.length > 1 ? this.latest.at - this.history.at(-2).at : 5;
    this.age.textContent = seconds < 2 ? "updated now" : `updated ${seconds} s ago`;
    this.age.dataset.state = seconds > Math.max(15, interval * 3) ? "stale" : "fresh";
  }

  restore() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(HISTORY_KEY) ?? "[]");
      return Array.isArray(saved) ? saved.slice(-CAPACITY) : [];
    } catch {
      return [];
    }
  }

  save() {
    try {
      sessionStorage.setItem(HISTORY_KEY, JSON.stringify(this.history));
    } catch {
      // storage full or disabled: the charts still work, they just start empty next time
    }
  }
}
