// The console's only behaviour: the security-key ceremonies (enroll, sign in, add a key, and the step-up: a touch
// of a registered key before an action that needs one) on the pages that need them. Served as a file (the Content-Security-Policy allows no inline script); talks to the console's own routes
// with the page's CSRF token. window.SimpleWebAuthnBrowser comes from @simplewebauthn/browser's bundle.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  const status = document.getElementById("status");
  const say = (text, kind) => {
    if (!status) return;
    status.textContent = text;
    status.className = kind || "";
  };

  async function post(url, body) {
    const res = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", accept: "application/json", "x-csrf-token": csrf },
      body: JSON.stringify(body || {}),
    });
    let data = {};
    try {
      data = await res.json();
    } catch (_) {
      // not JSON: keep the status code
    }
    if (!res.ok) throw new Error(data.error || "refused (" + res.status + ")");
    return data;
  }

  const wa = window.SimpleWebAuthnBrowser;

  async function signIn() {
    say("Touch your security key…");
    try {
      const optionsJSON = await post("/console/login/options");
      const response = await wa.startAuthentication({ optionsJSON });
      const done = await post("/console/login/verify", { response });
      say("Signed in.", "ok");
      window.location.assign(done.next);
    } catch (e) {
      say("Sign-in refused: " + e.message, "error");
    }
  }

  // The step-up: a touch of one of the operator's registered keys (with user verification) for one action, named by
  // the POST path it allows. The server keeps it for that path, on this session, for two minutes, once.
  async function stepUp(forPath) {
    const optionsJSON = await post("/console/step-up/options", { for: forPath });
    let response;
    try {
      response = await wa.startAuthentication({ optionsJSON });
    } catch (e) {
      if (e && e.name === "NotAllowedError") throw new Error("no security key registered for you answered (or the touch was cancelled, or timed out).");
      throw e;
    }
    await post("/console/step-up/verify", { response });
  }

  // A form marked data-step-up (an action's confirmation, a key's removal): the touch first, then the form is sent as
  // it is. Without this script (or without the touch) the server refuses the form's POST.
  document.querySelectorAll("form[data-step-up]").forEach((form) => {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const button = form.querySelector('button[type="submit"]');
      if (button) button.disabled = true;
      say("Touch your security key to confirm…");
      try {
        await stepUp(form.getAttribute("action"));
        say("Confirmed with your security key.", "ok");
        form.submit();
      } catch (e) {
        say("Not confirmed, nothing was done: " + e.message, "error");
        if (button) button.disabled = false;
      }
    });
  });

  async function register(optionsUrl, verifyUrl, extra) {
    const label = document.getElementById("key-label").value.trim() || "security key";
    say("Touch your security key…");
    try {
      const optionsJSON = await post(optionsUrl, extra);
      const response = await wa.startRegistration({ optionsJSON });
      const done = await post(verifyUrl, Object.assign({ response, label }, extra));
      say("Security key registered.", "ok");
      return done;
    } catch (e) {
      say("Registration refused: " + e.message, "error");
      return undefined;
    }
  }

  const pageName = document.body.dataset.page;
  if (pageName === "login") {
    const button = document.getElementById("login");
    if (button) button.addEventListener("click", signIn);
  } else if (pageName === "enroll") {
    // The token travels in the URL fragment (never sent to the server by the browser, so never in a log);
    // it is taken out of the address bar at once.
    const token = new URLSearchParams(window.location.hash.slice(1)).get("t") || "";
    if (window.location.hash) history.replaceState(null, "", window.location.pathname);
    document.getElementById("enroll-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const done = await register("/console/enroll/options", "/console/enroll/verify", { token });
      if (done) {
        const a = document.createElement("a");
        a.href = done.next;
        a.id = "to-login";
        a.textContent = "Sign in now";
        status.append(" ", a);
      }
    });
  } else if (pageName === "keys") {
    // Two touches, two keys: first one already registered (the step-up), then the new one (often after swapping them).
    const form = document.getElementById("add-key-form");
    const confirmButton = document.getElementById("step-up-key");
    const addButton = document.getElementById("add-key");
    confirmButton.addEventListener("click", async () => {
      confirmButton.disabled = true;
      say("Touch your registered security key…");
      try {
        await stepUp(form.dataset.stepUpFor);
        say("Confirmed. Now insert the new security key and press \u201c2. Register the new key\u201d (within 2 minutes).", "ok");
        addButton.disabled = false;
      } catch (e) {
        say("Not confirmed: " + e.message, "error");
      }
      confirmButton.disabled = false;
    });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      addButton.disabled = true;
      const done = await register("/console/keys/options", "/console/keys/verify", {});
      if (done) window.location.assign(done.next);
    });
  }
})();
