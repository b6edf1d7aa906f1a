// The dashboard: one event stream for alerts, jobs, metrics and settings (a browser allows
// only six HTTP/1.1 connections per origin, so the panels share it), plus the agent chat's.

import { api } from "./api.js";
import { AlertFeed } from "./alerts.js";
import { ChatPanel } from "./chat.js";
import { JobTable } from "./jobs.js";
import { LiveStream, showState } from "./live.js";
import { MetricsPanel } from "./metrics.js";

const ROLES = ["viewer", "operator", "admin"];
const byId = (id) => document.getElementById(id);

function start() {
  const role = document.body.dataset.role;
  const metrics = new MetricsPanel(document.querySelector(".metrics"), { workers: byId("workers"), age: byId("metrics-age") });
  const alerts = new AlertFeed({ list: byId("alert-list"), count: byId("alert-count"), empty: byId("alerts-empty") });
  const jobs = new JobTable({
    rows: byId("job-rows"),
    empty: byId("jobs-empty"),
    filter: byId("job-filter"),
    canCancel: ROLES.indexOf(role) >= ROLES.indexOf("operator"),
  });
  const chat = new ChatPanel({
    log: byId("chat-log"),
    form: byId("chat-form"),
    input: byId("chat-input"),
    cancel: byId("chat-cancel"),
    error: byId("chat-error"),
    sessions: byId("chat-sessions"),
    newButton: byId("chat-new"),
    state: byId("chat-state"),
  });

  // Subscribe before loading, so nothing that happens in between is missed: an event for
  // something the load already shows is applied twice, which is harmless (upserts).
  const reload = () => Promise.all([alerts.load(), jobs.load()]).catch(showFailure);
  const jobEvent = (name) => (data) => jobs.changed(name, data);
  const feed = new LiveStream("/streams/alerts,jobs,metrics,system", {
    events: {
      "alert.created": (data) => alerts.created(data),
      "alert.updated": (data) => alerts.updated(data),
      "alert.expired": (data) => alerts.removed(data),
      "alert.deleted": (data) => alerts.removed(data),
      ...Object.fromEntries(
        ["queued", "running", "retrying", "succeeded", "failed", "cancelling", "cancelled"].map(
          (state) => [`job.${state}`, jobEvent(`job.${state}`)],
        ),
      ),
      metrics: (data) => metrics.receive(data),
      "setting.changed": (data) => {
        if (data.key === "site_name") byId("site-name").textContent = data.value;
      },
      reset: reload, // the events after our last one are gone: start again from the API
    },
    onState: (state) => showState(byId("feed-state"), state),
  });
  feed.open();
  reload();
  chat.start().catch(showFailure);

  byId("sign-out").addEventListener("click", async () => {
    try {
      await api("/auth/logout", { method: "POST" });
    } finally {
      window.location.reload();
    }
  });
  window.addEventListener("royal:signed-out", () => window.location.reload(), { once: true });
}

function showFailure(error) {
  console.error(error);
  byId("feed-state").title = `Loading failed: ${error.message}`;
}

start();
