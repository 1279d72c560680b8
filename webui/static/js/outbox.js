// The answer outbox: every answer is written to localStorage before it is sent and removed only
// once the server acknowledged it, so a refresh, a crash or a network blip loses nothing.
//
// - Answers go out one at a time, in the order given (undo relies on the order).
// - Each carries a client-generated idempotency key: a resend after a lost response makes the
//   server return the stored answer instead of storing a second one.
// - Network failures and 5xx/429 are retried with exponential backoff (with jitter); any other
//   error is final (e.g. 409 lease_lost) and the answer is dropped with a message.
// - On page load the stored answers are sent again (the server's idempotency makes that safe).
import { ApiError, api } from "./api.js";

const BASE_DELAY_MS = 250;
const MAX_DELAY_MS = 8000;

export function backoff(attempt) {
  const delay = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt);
  return delay / 2 + Math.random() * (delay / 2);
}

export class Outbox {
  constructor(storageKey, { onChange = () => {}, onRetry = () => {}, onFinalError = () => {} } = {}) {
    this.key = storageKey;
    this.onChange = onChange;
    this.onRetry = onRetry;
    this.onFinalError = onFinalError;
    this.entries = this.load();
    this.waiters = new Map(); // idempotency key -> {resolve, reject}
    this.pumping = false;
    this.attempt = 0;
    this.settled = new Set(); // idempotency keys this tab saw acknowledged or dropped
  }

  load() {
    try {
      const stored = JSON.parse(localStorage.getItem(this.key) || "[]");
      return Array.isArray(stored) ? stored.filter((e) => e && e.taskId && e.body && e.body.idempotency_key) : [];
    } catch (_) {
      return [];
    }
  }

  // Merge with what other tabs of the same annotator stored: keep their entries, drop the ones this
  // tab settled, add this tab's own.
  save() {
    try {
      const mine = new Set(this.entries.map((e) => e.body.idempotency_key));
      const others = this.load().filter((e) => !mine.has(e.body.idempotency_key) && !this.settled.has(e.body.idempotency_key));
      const all = [...others, ...this.entries];
      if (all.length) localStorage.setItem(this.key, JSON.stringify(all));
      else localStorage.removeItem(this.key);
    } catch (_) { /* storage full or blocked: the answer still goes out from memory */ }
    this.onChange(this.entries.length);
  }

  get size() {
    return this.entries.length;
  }

  pendingTaskIds() {
    return new Set(this.entries.map((e) => e.taskId));
  }

  // Queue an answer; resolves with the stored AnswerPublic, rejects with a final ApiError.
  add(taskId, body) {
    const entry = { taskId, body, queuedAt: Date.now() };
    this.entries.push(entry);
    this.save();
    const done = new Promise((resolve, reject) => this.waiters.set(body.idempotency_key, { resolve, reject }));
    done.catch(() => {}); // callers that never await it must not trigger unhandled rejections
    this.pump();
    return done;
  }

  // Resolves when everything queued so far is acknowledged or dropped (or after timeoutMs).
  async flush(timeoutMs) {
    this.pump();
    const start = Date.now();
    while (this.entries.length && Date.now() - start < timeoutMs) {
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.entries.length === 0;
  }

  settle(entry, result, error) {
    this.entries = this.entries.filter((e) => e !== entry);
    this.settled.add(entry.body.idempotency_key);
    this.save();
    const waiter = this.waiters.get(entry.body.idempotency_key);
    this.waiters.delete(entry.body.idempotency_key);
    if (error) {
      this.onFinalError(error, entry);
      waiter?.reject(error);
    } else {
      waiter?.resolve(result);
    }
  }

  async pump() {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.entries.length) {
        const entry = this.entries[0];
        try {
          const result = await api("POST", `tasks/${entry.taskId}/answers`, entry.body);
          this.attempt = 0;
          this.settle(entry, result, null);
        } catch (err) {
          const error = err instanceof ApiError ? err : new ApiError(0, "network", String(err), []);
          if (error.transient) {
            this.onRetry(this.attempt);
            await new Promise((r) => setTimeout(r, backoff(this.attempt++)));
            continue;
          }
          if (error.status === 401) return; // signing in again resumes from localStorage
          this.attempt = 0;
          this.settle(entry, null, error);
        }
      }
    } finally {
      this.pumping = false;
    }
  }
}
