// The signed-in session, kept in localStorage so a reload or a second tab stays signed in.
// Our password accounts: a 30-minute access token renewed with the refresh token (/refresh; each
// refresh token works once). Firebase accounts: an ID token renewed with Firebase's refresh token.
import { ApiError } from "./api.js";
import { firebaseRefresh, firebaseSignIn } from "./firebase.js";

const KEY = "aijobs.session";
const EARLY_MS = 60_000; // renew a minute before expiry, so a long-poll never starts on a dying token

export class Session extends EventTarget {
  constructor(config) {
    super();
    this.config = config;
    this.pending = null;
  }

  get current() {
    try {
      return JSON.parse(localStorage.getItem(KEY));
    } catch {
      return null;
    }
  }

  save(state) {
    localStorage.setItem(KEY, JSON.stringify(state));
    this.dispatchEvent(new Event("change"));
  }

  /** Forget the session (it was revoked, expired or reused); the app shows the sign-in page. */
  end(error) {
    if (!this.current) return;
    localStorage.removeItem(KEY);
    this.dispatchEvent(new CustomEvent("ended", { detail: error }));
  }

  async accessToken() {
    const state = this.current;
    if (!state) throw new ApiError(401, "unauthenticated");
    if (state.expires_at - Date.now() > EARLY_MS) return state.access_token;
    return (await this.refresh()).access_token;
  }

  /** Renew the access token. One refresh at a time, across tabs too (a Web Lock): a refresh token
   * sent twice counts as stolen, and the API then ends the whole session. */
  refresh() {
    if (this.pending) return this.pending;
    const before = this.current?.refresh_token;
    const run = async () => {
      const state = this.current;
      if (!state) throw new ApiError(401, "unauthenticated");
      // Another tab renewed it while this one waited for the lock: use what it got.
      if (state.refresh_token !== before && state.expires_at - Date.now() > EARLY_MS) return state;
      try {
        const next =
          state.kind === "firebase"
            ? await firebaseRefresh(this.config.firebase, state.refresh_token)
            : await this.passwordRefresh(state.refresh_token);
        const saved = { ...state, ...next };
        this.save(saved);
        return saved;
      } catch (error) {
        if (error.status === 400 || error.status === 401) this.end(error);
        throw error;
      }
    };
    const locked = navigator.locks ? navigator.locks.request("aijobs-refresh", run) : run();
    this.pending = locked.finally(() => {
      this.pending = null;
    });
    return this.pending;
  }

  async passwordRefresh(refreshToken) {
    const body = await this.post("/refresh", { refresh_token: refreshToken });
    return fromSession(body);
  }

  async signUp(username, password) {
    const body = await this.post("/signup", { username, password });
    this.save({ kind: "password", label: body.user.username, ...fromSession(body) });
  }

  async signIn(username, password) {
    const body = await this.post("/login", { username, password });
    this.save({ kind: "password", label: username.toLowerCase(), ...fromSession(body) });
  }

  async firebase(email, password, create) {
    this.save(await firebaseSignIn(this.config.firebase, email, password, create));
  }

  async signOut() {
    const state = this.current;
    localStorage.removeItem(KEY);
    // Revoke the sign-in on the server too, so a copied refresh token is worthless.
    if (state?.kind === "password") await this.post("/logout", { refresh_token: state.refresh_token }).catch(() => {});
    this.dispatchEvent(new Event("change"));
  }

  async post(path, body) {
    let response;
    try {
      response = await fetch(this.config.api_base_url.replace(/\/+$/, "") + path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError(0, "network_error", error.message);
    }
    if (!response.ok) throw await ApiError.from(response);
    return response.status === 204 ? null : response.json();
  }
}

function fromSession(body) {
  return {
    access_token: body.access_token,
    refresh_token: body.refresh_token,
    expires_at: Date.now() + body.expires_in * 1000,
  };
}
