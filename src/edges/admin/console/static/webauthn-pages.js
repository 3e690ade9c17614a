// The console's only behaviour: the security-key ceremonies (enroll, sign in, add a key) on the pages that need
// them. Served as a file (the Content-Security-Policy allows no inline script); talks to the console's own routes
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
    document.getElementById("add-key-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const done = await register("/console/keys/options", "/console/keys/verify", {});
      if (done) window.location.assign(done.next);
    });
  }
})();
