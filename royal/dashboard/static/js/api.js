// Same-origin JSON calls. The browser sends the HttpOnly session cookie by itself; the page
// never sees a token. Errors carry Royal's JSON error body (error, code, status_code).

export class ApiError extends Error {
  constructor(response, body) {
    super(body?.error ?? `${response.status} ${response.statusText}`);
    this.status = response.status;
    this.code = body?.code ?? null;
    this.retryAfter = Number(response.headers.get("Retry-After")) || null;
  }
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, credentials: "same-origin", signal, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null; // a proxy's HTML error page: keep the status, drop the body
  }
  if (!response.ok) {
    if (response.status === 401 && path !== "/auth/login") signedOut();
    throw new ApiError(response, data);
  }
  return data;
}

// The session ended (logout elsewhere, revoked, expired): show the sign-in page.
export function signedOut() {
  window.dispatchEvent(new CustomEvent("royal:signed-out"));
}
