// A live stream that keeps itself alive.
//
// EventSource reconnects by itself after a dropped connection and sends Last-Event-ID, so Royal
// resumes exactly after the last event. It gives up for good, though, on an HTTP error or a
// response that is not an event stream (a proxy's 502 while Royal restarts, a 503 while it
// drains). Then this opens a new one, with backoff, that resumes with ?last_event_id= of the
// last event seen. Before that it checks the session: a 401 means sign in again, not retry.

import { api, signedOut } from "./api.js";

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];

export class LiveStream {
  constructor(url, { events, onState = () => {} }) {
    this.url = url;
    this.events = events;
    this.onState = onState;
    this.lastEventId = null;
    this.failures = 0;
    this.source = null;
    this.timer = null;
    this.state = "idle";
  }

  open() {
    this.close();
    const url = new URL(this.url, window.location.href);
    if (this.lastEventId) url.searchParams.set("last_event_id", this.lastEventId);
    const source = new EventSource(url);
    this.source = source;
    this.setState("connecting");
    for (const [name, handle] of Object.entries(this.events)) {
      source.addEventListener(name, (event) => {
        // A stream's own `error` events share the name with EventSource's connection errors,
        // which are plain Events without data: only messages are the server's.
        if (!(event instanceof MessageEvent)) return;
        if (event.lastEventId) this.lastEventId = event.lastEventId;
        handle(event.data ? JSON.parse(event.data) : null, event);
      });
    }
    source.addEventListener("revoked", () => signedOut());
    source.onopen = () => {
      this.failures = 0;
      this.setState("live");
    };
    source.onerror = () => {
      if (source !== this.source) return;
      this.setState("reconnecting");
      if (source.readyState === EventSource.CLOSED) this.retryLater();
    };
    return this;
  }

  retryLater() {
    const base = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)];
    this.failures += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(async () => {
      try {
        await api("/auth/me"); // a 401 here signs out instead of retrying forever
      } catch (error) {
        if (error.status === 401) return;
      }
      if (this.source?.readyState === EventSource.CLOSED) this.open();
    }, base * (0.8 + Math.random() * 0.4));
  }

  close() {
    clearTimeout(this.timer);
    if (this.source) {
      this.source.close();
      this.source = null;
    }
    this.setState("idle");
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.onState(state);
  }
}

// Show a stream's state in a pill: data-state drives its colour.
export function showState(element, state) {
  const words = { live: "live", connecting: "connecting", reconnecting: "reconnecting", idle: "idle" };
  element.dataset.state = state;
  element.textContent = words[state] ?? state;
}
