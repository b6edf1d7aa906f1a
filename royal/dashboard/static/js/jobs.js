// The job list: the newest jobs with their state, changed in place as `job.*` events arrive.
// Operators can cancel a job that has not finished.

import { api } from "./api.js";
import { clockTime, el, toDate } from "./format.js";

const SHOWN = 50;
const UNFINISHED = new Set(["queued", "running"]);
// Events whose name says more than the job's status (a retry waits as "queued").
const EVENT_STATES = { "job.cancelling": "cancelling", "job.retrying": "retrying" };
const FILTERS = {
  all: () => true,
  active: (job) => UNFINISHED.has(job.status),
  failed: (job) => job.status === "failed",
};

export class JobTable {
  constructor({ rows, empty, filter, canCancel }) {
    this.rows = rows;
    this.empty = empty;
    this.filter = filter;
    this.canCancel = canCancel;
    this.jobs = new Map(); // id -> job (summary fields, plus `state` for display)
    filter.addEventListener("change", () => this.render());
  }

  async load() {
    const page = await api(`/jobs?limit=${SHOWN}`);
    this.jobs.clear();
    for (const job of page.items) this.jobs.set(job.id, { ...job, changedAt: toDate(job.updated_at) });
    this.render();
  }

  // A `job.*` event: its data is the job's summary; the event's name says what happened.
  changed(name, summary) {
    const known = this.jobs.get(summary.id);
    if (!known && summary.id < this.oldestShown()) return; // a change to a job below the list
    const state = EVENT_STATES[name] ?? summary.status;
    this.jobs.set(summary.id, { ...known, ...summary, state, changedAt: new Date() });
    this.render(summary.id);
  }

  oldestShown() {
    return this.jobs.size < SHOWN ? 0 : Math.min(...this.jobs.keys());
  }

  render(flashId = null) {
    const shown = [...this.jobs.values()]
      .sort((a, b) => b.id - a.id)
      .slice(0, SHOWN);
    for (const id of [...this.jobs.keys()]) if (!shown.some((job) => job.id === id)) this.jobs.delete(id);
    const visible = shown.filter(FILTERS[this.filter.value] ?? FILTERS.all);
    this.rows.replaceChildren(...visible.map((job) => this.row(job, job.id === flashId)));
    this.empty.hidden = visible.length > 0;
  }

  row(job, flash) {
    const state = job.state ?? (job.cancel_requested && UNFINISHED.has(job.status) ? "cancelling" : job.status);
    const cancel = this.canCancel && UNFINISHED.has(job.status) && state !== "cancelling"
      ? el("button", { type: "button", class: "link", title: `Cancel job ${job.id}` }, "cancel")
      : null;
    cancel?.addEventListener("click", () => this.cancel(job.id, cancel));
    return el(
      "tr",
      { class: flash ? "flash" : null, dataset: { jobId: job.id, status: state } },
      el("td", { class: "num" }, String(job.id)),
      el("td", { class: "kind" }, job.kind),
      el("td", {}, el("span", { class: `badge status-${state}`, title: job.last_error ?? "" }, state)),
      el("td", { class: "num" }, `${job.attempts}/${job.max_attempts}`),
      el("td", { class: "muted" }, clockTime(job.changedAt)),
      el("td", {}, cancel),
    );
  }

  async cancel(id, button) {
    button.disabled = true;
    try {
      await api(`/jobs/${id}/cancel`, { method: "POST" });
    } catch (error) {
      button.disabled = false;
      button.title = error.message;
    }
  }
}
