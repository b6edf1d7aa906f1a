// Sign in: POST /auth/login with cookie=true sets the HttpOnly session cookie the dashboard's
// requests and streams use; the page never holds the token. Then load the dashboard.

import { api } from "./api.js";

const form = document.getElementById("login-form");
const error = document.getElementById("login-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = form.querySelector("button");
  button.disabled = true;
  error.hidden = true;
  try {
    await api("/auth/login", {
      method: "POST",
      body: { username: form.username.value.trim(), password: form.password.value, cookie: true },
    });
    window.location.replace("/");
  } catch (failure) {
    error.textContent =
      failure.status === 401 ? "Wrong username or password."
        : failure.status === 429 ? `Too many attempts. Try again in ${failure.retryAfter ?? 60} s.`
          : failure.status === 422 || failure.status === 400 ? "Enter a username and a password of 12 characters or more."
            : `Sign-in failed: ${failure.message}`;
    error.hidden = false;
    form.password.select();
  } finally {
    button.disabled = false;
  }
});
