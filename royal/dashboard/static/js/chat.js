// The agent chat. A reply streams token by token over EventSource (`/agents/stream`, kept open
// across replies with follow=true). After a dropped connection the browser reconnects with
// Last-Event-ID and Royal sends exactly the tokens that were missed, so the reply completes
// with nothing repeated; token indexes guard against repeats all the same.

import { api } from "./api.js";
import { el } from "./format.js";
import { LiveStream, showState } from "./live.js";

const SAVED_SESSION = "royal.chat.session";
const UNFINISHED = new Set(["pending", "streaming"]);

export class ChatPanel {
  constructor({ log, form, input, cancel, error, sessions, newButton, state }) {
    Object.assign(this, { log, form, input, cancelButton: cancel, error, sessions, state });
    this.sessionId = null;
    this.stream = null;
    this.bubbles = new Map(); // message_id -> bubble
    this.replying = null; // the id of the reply in progress
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    cancel.addEventListener("click", () => this.cancel());
    newButton.addEventListener("click", () => this.select(""));
    sessions.addEventListener("change", () => this.select(sessions.value));
  }

  async start() {
    await this.loadSessions();
    const saved = localStorage.getItem(SAVED_SESSION) ?? "";
    const known = [...this.sessions.options].some((option) => option.value === saved);
    await this.select(known ? saved : "");
  }

  async loadSessions() {
    const page = await api("/agents/sessions?limit=50");
    const options = page.items.map((session) => this.option(session));
    this.sessions.replaceChildren(el("option", { value: "" }, "New chat"), ...options);
    this.sessions.value = this.sessionId ?? "";
  }

  option(session) {
    const when = new Date(session.created_at).toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
    return el("option", { value: session.session_id }, `${session.title ?? "Untitled"} · ${when}`);
  }

  // Show one session: its messages from the API, then its live stream.
  async select(sessionId) {
    this.stream?.close();
    this.stream = null;
    this.sessionId = sessionId || null;
    this.sessions.value = sessionId;
    this.bubbles.clear();
    this.log.replaceChildren();
    this.setReplying(null);
    this.showError(null);
    if (sessionId) localStorage.setItem(SAVED_SESSION, sessionId);
    else localStorage.removeItem(SAVED_SESSION);
    if (!this.sessionId) {
      showState(this.state, "idle");
      this.log.append(el("li", { class: "chat-hint muted" }, "Ask the agent about open alerts, the job queue or the system's status."));
      return;
    }
    const page = await api(`/agents/sessions/${encodeURIComponent(sessionId)}/messages?limit=100`);
    let inProgress = null;
    for (const message of page.items.reverse()) {
      if (message.role === "system") continue;
      const bubble = this.bubble(message.message_id, message.role);
      if (UNFINISHED.has(message.status)) {
        inProgress = message.message_id; // its tokens come again from the stream, from the first
        this.setStatus(bubble, message.status);
        this.setReplying(message.message_id);
      } else {
        this.finish(bubble, message);
      }
    }
    this.scroll(true);
    this.openStream(inProgress);
  }

  openStream(replyId) {
    const query = new URLSearchParams({ session_id: this.sessionId, follow: "true" });
    if (replyId !== null) query.set("reply_id", replyId);
    this.stream = new LiveStream(`/agents/stream?${query}`, {
      events: {
        message: (data) => this.delta(data),
        done: (data) => this.done(data),
        error: (data) => this.failed(data),
        reset: () => this.select(this.sessionId),
      },
      onState: (state) => showState(this.state, state),
    }).open();
  }

  async submit() {
    const content = this.input.value.trim();
    if (!content || this.replying !== null) return;
    this.showError(null);
    try {
      if (!this.sessionId) await this.create(content);
      const sent = this.bubble(null, "user");
      sent.text.textContent = content;
      this.input.value = "";
      this.scroll(true);
      const answer = await api("/agents/message", {
        method: "POST",
        body: { session_id: this.sessionId, role: "user", content },
      });
      sent.element.dataset.messageId = answer.message_id;
      this.bubbles.set(answer.message_id, sent);
      if (answer.reply_id !== null) {
        const reply = this.bubble(answer.reply_id, "assistant");
        if (!reply.finished && reply.nextIndex === 0) this.setStatus(reply, "pending");
        if (!reply.finished) this.setReplying(answer.reply_id);
      }
    } catch (error) {
      this.showError(error.code === "REPLY_IN_PROGRESS" ? "The agent is still answering." : error.message);
      if (!this.input.value) this.input.value = content;
    }
  }

  // A new session titled after its first question, shown at once and streamed from the start.
  async create(content) {
    const title = content.length > 60 ? `${content.slice(0, 57)}…` : content;
    const created = await api("/agents/session", { method: "POST", body: { title } });
    await this.select(created.session_id);
    await this.loadSessions();
  }

  async cancel() {
    if (!this.sessionId || this.replying === null) return;
    this.cancelButton.disabled = true;
    try {
      await api(`/agents/sessions/${encodeURIComponent(this.sessionId)}/cancel`, { method: "POST" });
    } catch (error) {
      if (error.code !== "NOTHING_TO_CANCEL") this.showError(error.message);
    } finally {
      this.cancelButton.disabled = false;
    }
  }

  delta({ message_id: id, delta, index }) {
    const bubble = this.bubble(id, "assistant");
    if (bubble.finished || index < bubble.nextIndex) return; // already shown
    bubble.nextIndex = index + 1;
    bubble.text.textContent += delta;
    this.setStatus(bubble, "streaming");
    this.setReplying(id);
    this.scroll();
  }

  done({ message_id: id, content, usage }) {
    this.finish(this.bubble(id, "assistant"), { status: "complete", content, usage });
  }

  failed({ message_id: id, code, error, content }) {
    const status = code === "cancelled" || code === "abandoned" ? "cancelled" : "failed";
    this.finish(this.bubble(id, "assistant"), { status, content, error: `${error} (${code})` });
  }

  // The final text replaces what was streamed: the stored message is the truth.
  finish(bubble, { status, content, usage = null, error = null }) {
    bubble.finished = true;
    bubble.text.textContent = content ?? "";
    this.setStatus(bubble, status);
    const notes = [];
    if (error) notes.push(error);
    if (usage) notes.push(`${usage.completion_tokens} tokens`);
    bubble.note.textContent = notes.join(" · ");
    if (this.replying === Number(bubble.element.dataset.messageId)) this.setReplying(null);
    this.scroll();
  }

  bubble(id, role) {
    const known = id === null ? null : this.bubbles.get(id);
    if (known) return known;
    const text = el("div", { class: "bubble-text" });
    const note = el("div", { class: "bubble-note muted" });
    const element = el("li", { class: `bubble ${role}`, dataset: { messageId: id ?? "" } }, text, note);
    this.log.querySelector(".chat-hint")?.remove();
    this.log.append(element);
    const bubble = { element, text, note, nextIndex: 0, finished: false };
    if (id !== null) this.bubbles.set(id, bubble);
    return bubble;
  }

  setStatus(bubble, status) {
    bubble.element.dataset.status = status;
  }

  setReplying(id) {
    this.replying = id;
    this.cancelButton.hidden = id === null;
    this.form.querySelector('[type="submit"]').disabled = id !== null;
  }

  showError(message) {
    this.error.hidden = !message;
    this.error.textContent = message ?? "";
  }

  // Follow the newest text, unless the operator scrolled up to read.
  scroll(force = false) {
    const { log } = this;
    const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    if (force || nearBottom) log.scrollTop = log.scrollHeight;
  }
}
