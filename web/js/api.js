// The API client: one fetch wrapper for every call. It adds the bearer (refreshing it first when
// it is about to expire), turns every error answer into an ApiError carrying the stable `code`
// and the `Retry-After` seconds (the API exposes that header to pages through CORS).

export class ApiError extends Error {
  constructor(status, code, message = "", retryAfter = null) {
    super(message || code);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  static async from(response) {
    let code = `http_${response.status}`;
    let message = "";
    try {
      const body = await response.json();
      code = body?.error?.code || code;
      message = body?.error?.message || "";
    } catch {
      // Not our JSON (a proxy's page): the status alone has to do.
    }
    const header = response.headers.get("Retry-After");
    const retryAfter = header && /^[0-9]+$/.test(header) ? Number(header) : null;
    return new ApiError(response.status, code, message, retryAfter);
  }
}

export class Api {
  constructor(baseUrl, session) {
    this.base = baseUrl.replace(/\/+$/, "");
    this.session = session;
  }

  /**
   * `call("GET", "/jobs", {query: {status: "queued"}})`. `auth: false` for the calls that take no
   * token (sign-up, catalog); `as: "blob"` for the image. Answers the parsed body (null for 204).
   */
  async call(method, path, { body, query, headers = {}, signal, auth = true, as = "json" } = {}) {
    const url = new URL(this.base + path);
    for (const [name, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    for (let attempt = 1; ; attempt += 1) {
      const sent = { ...headers };
      if (body !== undefined) sent["Content-Type"] = "application/json";
      if (auth) sent.Authorization = `Bearer ${await this.session.accessToken()}`;
      let response;
      try {
        response = await fetch(url, {
          method,
          headers: sent,
          body: body === undefined ? undefined : JSON.stringify(body),
          signal,
        });
      } catch (error) {
        if (error.name === "AbortError") throw error;
        throw new ApiError(0, "network_error", error.message);
      }
      if (response.ok) {
        if (response.status === 204) return null;
        return as === "blob" ? response.blob() : response.json();
      }
      const error = await ApiError.from(response);
      // The token can expire between our check and the server's: refresh once and repeat (a
      // submit repeats with the same Idempotency-Key, so it is never charged twice).
      if (auth && attempt === 1 && error.status === 401 && error.code === "token_expired") {
        await this.session.refresh();
        continue;
      }
      if (auth && error.status === 401) this.session.end(error);
      throw error;
    }
  }

  get(path, options = {}) {
    return this.call("GET", path, options);
  }

  post(path, body, options = {}) {
    return this.call("POST", path, { ...options, body });
  }

  patch(path, body, options = {}) {
    return this.call("PATCH", path, { ...options, body });
  }

  delete(path, options = {}) {
    return this.call("DELETE", path, options);
  }
}
