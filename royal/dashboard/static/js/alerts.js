// The alert feed: active alerts, newest first. A new alert appears the moment its event
// arrives; an expired or deleted one leaves. Royal announces expiries itself (alert.expired),
// and the feed also drops an alert a few seconds past its expiry in case this page missed it.

import { api } from "./api.js";
import { clockTime, el, relative, toDate } from "./format.js";

const SEVERITY_ORDER = ["extreme", "severe", "moderate", "minor", "unknown"];
const EXPIRY_GRACE_MS = 5000; // Royal's own expiry check runs every few seconds
const SHOWN = 100;

export class AlertFeed {
  constructor({ list, count, empty }) {
    this.list = list;
    this.count = count;
    this.empty = empty;
    this.alerts = new Map(); // id -> { alert, element }
    setInterval(() => this.tick(), 1000);
  }

  async load() {
    const page = await api(`/api/alerts?state=active&limit=${SHOWN}`);
    for (const { element } of this.alerts.values()) element.remove();
    this.alerts.clear();
    for (const alert of page.items.reverse()) this.upsert(alert, { fresh: false });
    this.refresh();
  }

  created(alert) {
    this.upsert(alert, { fresh: true });
  }

  updated(alert) {
    this.upsert(alert, { fresh: false });
  }

  removed(alert) {
    const known = this.alerts.get(alert.id);
    if (!known) return;
    this.alerts.delete(alert.id);
    known.element.classList.add("leaving");
    known.element.addEventListener("animationend", () => known.element.remove(), { once: true });
    setTimeout(() => known.element.remove(), 600); // no animation (reduced motion): still go
    this.refresh();
  }

  upsert(alert, { fresh }) {
    if (alert.expired) return this.removed(alert);
    const element = this.render(alert);
    const known = this.alerts.get(alert.id);
    if (known) known.element.replaceWith(element);
    else this.list.prepend(element);
    if (fresh) element.classList.add("arriving");
    this.alerts.set(alert.id, { alert, element });
    while (this.alerts.size > SHOWN) this.removed(this.alerts.values().next().value.alert);
    this.refresh();
  }

  render(alert) {
    const expires = toDate(alert.expires_at);
    return el(
      "li",
      { class: `alert severity-${alert.severity}`, dataset: { alertId: alert.id } },
      el("div", { class: "alert-head" },
        el("span", { class: "severity" }, alert.severity),
        el("strong", { class: "code" }, alert.event_code),
        el("time", { class: "muted", datetime: alert.created_at, title: alert.created_at }, clockTime(toDate(alert.created_at)))),
      el("p", { class: "alert-message" }, alert.message),
      el("div", { class: "alert-foot muted" },
        el("span", { class: "areas" }, alert.areas.length ? alert.areas.join(", ") : "all areas"),
        el("span", { class: "expires", dataset: { expires: expires.getTime() } }, `expires ${relative(expires)}`)),
    );
  }

  tick() {
    const now = Date.now();
    for (const { alert, element } of [...this.alerts.values()]) {
      const expires = toDate(alert.expires_at);
      if (expires.getTime() + EXPIRY_GRACE_MS < now) this.removed(alert);
      else element.querySelector(".expires").textContent = `expires ${relative(expires, now)}`;
    }
  }

  refresh() {
    const size = this.alerts.size;
    this.count.textContent = size;
    this.count.dataset.severity = this.worst() ?? "none";
    this.empty.hidden = size > 0;
  }

  worst() {
    let worst = null;
    for (const { alert } of this.alerts.values()) {
      if (worst === null || SEVERITY_ORDER.indexOf(alert.severity) < SEVERITY_ORDER.indexOf(worst)) worst = alert.severity;
    }
    return worst;
  }
}
