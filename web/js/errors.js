// Every API error in words a person understands, from its stable `code` (the message is for
// developers and may change). 402 and 429 say how many credits are missing and when to retry.

const WORDS = {
  // Signing in
  invalid_credentials: "That username and password do not match an account.",
  username_taken: "That username is taken. Choose another one.",
  too_many_login_attempts: "Too many failed sign-ins for this account.",
  signup_rate_limited: "Too many accounts were created from here.",
  unauthenticated: "You are not signed in. Sign in again.",
  invalid_token: "Your sign-in is no longer valid. Sign in again.",
  token_expired: "Your sign-in has expired. Sign in again.",
  invalid_api_key: "That API key is not valid (it may have been revoked).",
  invalid_refresh_token: "Your session has ended. Sign in again.",
  refresh_token_expired: "Your session has expired. Sign in again.",
  refresh_token_reused: "Your session was used from somewhere else, so it was ended for safety. Sign in again.",
  api_key_not_allowed: "API keys cannot manage API keys: sign in with a password.",
  // Jobs
  insufficient_credits: "You do not have enough credits for this.",
  input_too_large: "The input is too long.",
  payload_too_large: "The request is too large.",
  unknown_task_type: "That task type does not exist.",
  task_type_unsupported: "This service cannot run that task type right now.",
  unknown_model: "That model is not offered for this task type.",
  model_unavailable: "That model is not available right now. Choose another one.",
  invalid_option: "One of the options is not accepted.",
  idempotency_key_reused: "This request was already sent with different content. Reload and try again.",
  invalid_idempotency_key: "The request's idempotency key is not valid.",
  submit_rate_limited: "You are submitting too fast.",
  job_not_found: "There is no such job in your account.",
  job_not_cancelable: "This job can no longer be canceled: it has already started.",
  job_not_finished: "A job can only be deleted once it has finished.",
  job_deleted: "This job was deleted.",
  job_in_progress: "This job is being worked on.",
  image_not_found: "This job has no image.",
  storage_unavailable: "The image store did not answer.",
  enqueue_failed: "The job could not be queued. You were not charged.",
  outcome_unknown: "We could not confirm the job was accepted. Submit again: you will not be charged twice.",
  catalog_invalid: "The price list is being updated.",
  // Conversations and keys
  conversation_not_found: "There is no such conversation in your account.",
  conversation_busy: "A message in this conversation is still being answered. Wait for it, then try again.",
  conversation_full: "This conversation has reached its message limit. Start a new one.",
  too_many_conversations: "You have reached the number of conversations allowed. Delete one first.",
  too_many_api_keys: "You have reached the number of API keys allowed. Revoke one first.",
  api_key_not_found: "That API key does not exist (it may already be revoked).",
  // Teams
  team_not_found: "There is no such team you belong to.",
  team_role_required: "Your role in this team does not allow that.",
  member_not_found: "That person is not a member of this team.",
  user_not_found: "There is no account with that username.",
  unknown_user: "There is no account with that username.",
  already_member: "That person is already a member of this team.",
  last_owner: "A team needs an owner: make someone else owner first.",
  member_daily_limit: "This would go over your daily spending limit in this team.",
  member_monthly_limit: "This would go over your monthly spending limit in this team.",
  team_busy: "The team has unfinished jobs. Wait for them to finish.",
  team_full: "This team has reached its number of members.",
  team_not_empty: "The team still has credits: move them back first.",
  too_many_teams: "You have reached the number of teams allowed.",
  transfer_id_reused: "This transfer was already sent with a different amount. Reload and try again.",
  // Requests
  invalid_request: "Some of what you entered is not valid.",
  invalid_cursor: "That page of results is no longer available. Start from the first page.",
  invalid_limit: "That page size is not allowed.",
  invalid_wait: "That waiting time is not allowed.",
  malformed_json: "The console sent a malformed request.",
  invalid_unicode: "The text contains characters that cannot be stored.",
  unsupported_media_type: "The console sent a request of the wrong kind.",
  method_not_allowed: "The console made a request the service does not take.",
  route_not_found: "The console asked for something the service does not have.",
  origin_not_allowed: "This console's address is not allowed to call the service (CORS).",
  unavailable: "The service is temporarily unavailable.",
  internal: "Something went wrong on our side.",
  network_error: "The service could not be reached. Check your connection.",
  // Firebase Authentication (Identity Toolkit's own codes)
  EMAIL_EXISTS: "An account with this email already exists. Sign in instead.",
  EMAIL_NOT_FOUND: "That email and password do not match an account.",
  INVALID_PASSWORD: "That email and password do not match an account.",
  INVALID_LOGIN_CREDENTIALS: "That email and password do not match an account.",
  INVALID_EMAIL: "That is not a valid email address.",
  WEAK_PASSWORD: "That password is too weak: use at least 6 characters.",
  USER_DISABLED: "This account has been disabled.",
  TOO_MANY_ATTEMPTS_TRY_LATER: "Too many attempts. Try again later.",
};

// Codes whose server message says which field is wrong: worth showing after the sentence.
const DETAILED = new Set(["invalid_request", "invalid_option", "input_too_large"]);

export function retryWords(seconds) {
  const at = new Date(Date.now() + seconds * 1000);
  const clock = at.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const wait = seconds < 90 ? `${seconds} seconds` : `${Math.ceil(seconds / 60)} minutes`;
  return `Try again in ${wait} (at ${clock}).`;
}

/**
 * The sentence to show for an error. `context.missing`: how many credits a 402 lacks, which the
 * page works out from the price it showed and the balance it reads after the refusal; `whose`
 * names that balance when it is not the person's own (a team's).
 */
export function describeError(error, context = {}) {
  const code = error?.code || "internal";
  let text = WORDS[code];
  if (!text) text = `The service refused this (${code})${error?.message ? `: ${error.message}` : "."}`;
  if (DETAILED.has(code) && error?.message) text += ` (${error.message})`;
  if (error?.status === 402 || code === "insufficient_credits") {
    const missing = context.missing;
    if (missing > 0) text = `You need ${missing} more credit${missing === 1 ? "" : "s"} for this.`;
    if (context.cost !== undefined && context.balance !== undefined) {
      text += ` It costs ${context.cost} and ${context.whose || "your balance"} is ${context.balance}.`;
    }
  }
  if (error?.retryAfter) text += ` ${retryWords(error.retryAfter)}`;
  else if (error?.status === 429 || error?.status === 503) text += " Try again in a moment.";
  return text;
}

/** A failed job's `error.code` in words (those the worker records). */
const JOB_ERRORS = {
  ai_rate_limited: "The AI provider was too busy.",
  content_refused: "The AI provider refused this content.",
  ai_bad_output: "The AI provider answered with something unusable.",
  ai_timeout: "The AI provider took too long.",
  ai_unavailable: "The AI provider could not be reached.",
  enqueue_failed: "The job could not be queued.",
  queue_timeout: "The job waited too long in the queue.",
  canceled: "The job was canceled.",
};

export function describeJobError(error) {
  if (!error) return "";
  return JOB_ERRORS[error.code] || `The job failed (${error.code}).`;
}
