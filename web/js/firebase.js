// Firebase Authentication without the Firebase SDK: its two REST APIs, Identity Toolkit (sign up,
// sign in) and Secure Token (refresh). Locally both are the Auth emulator's; in production they
// are Google's hosts, the only ones besides ours that the console calls.
import { ApiError } from "./api.js";

async function firebaseFetch(url, init) {
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new ApiError(0, "network_error", error.message);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    // Identity Toolkit's errors are {"error": {"message": "EMAIL_EXISTS"}} or "WEAK_PASSWORD : ...".
    const message = body?.error?.message || "internal";
    throw new ApiError(response.status, message.split(/[ :]/)[0], message);
  }
  return body;
}

export async function firebaseSignIn(firebase, email, password, create) {
  const operation = create ? "accounts:signUp" : "accounts:signInWithPassword";
  const url = `${firebase.identity_toolkit_url}/v1/${operation}?key=${encodeURIComponent(firebase.api_key)}`;
  const body = await firebaseFetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password, returnSecureToken: true }),
  });
  return {
    kind: "firebase",
    access_token: body.idToken,
    refresh_token: body.refreshToken,
    expires_at: Date.now() + Number(body.expiresIn) * 1000,
    label: body.email || email,
  };
}

export async function firebaseRefresh(firebase, refreshToken) {
  const url = `${firebase.secure_token_url}/v1/token?key=${encodeURIComponent(firebase.api_key)}`;
  const body = await firebaseFetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: refreshToken }),
  });
  return {
    access_token: body.id_token,
    refresh_token: body.refresh_token,
    expires_at: Date.now() + Number(body.expires_in) * 1000,
  };
}
