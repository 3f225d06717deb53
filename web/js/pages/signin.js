// Sign in or sign up: our own password accounts (/login, /signup) and, where configured,
// Firebase Authentication with email and password (an ID token is a bearer like ours).
import { field, h, messageBox, pageHeading } from "../dom.js";
import { describeError } from "../errors.js";

export const title = () => "Sign in";

function accountForm({ legend, nameLabel, nameType, autocomplete, signInText, signUpText, onSubmit }) {
  const message = messageBox();
  const name = h("input", { type: nameType, name: "name", required: true, autocomplete });
  const password = h("input", { type: "password", name: "password", required: true, autocomplete: "current-password" });
  let creating = false;
  const form = h(
    "form",
    {
      class: "card",
      onsubmit: async (event) => {
        event.preventDefault();
        message.clear();
        const buttons = form.querySelectorAll("button");
        buttons.forEach((b) => (b.disabled = true));
        try {
          await onSubmit(name.value.trim(), password.value, creating);
        } catch (error) {
          message.error(describeError(error));
        } finally {
          buttons.forEach((b) => (b.disabled = false));
          creating = false;
        }
      },
    },
    h("h2", {}, legend),
    field(nameLabel, name),
    field("Password", password),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit" }, signInText),
      h(
        "button",
        {
          type: "submit",
          class: "secondary",
          // Same form, other action: a new account gets its password chosen, not remembered.
          onclick: () => {
            creating = true;
            password.autocomplete = "new-password";
          },
        },
        signUpText,
      ),
    ),
    message.el,
  );
  return form;
}

export async function render(ctx) {
  const ended = sessionStorage.getItem("aijobs.ended");
  sessionStorage.removeItem("aijobs.ended");
  const forms = [
    accountForm({
      legend: "Username and password",
      nameLabel: "Username",
      nameType: "text",
      autocomplete: "username",
      signInText: "Sign in",
      signUpText: "Create account",
      onSubmit: async (username, password, creating) => {
        if (creating) await ctx.session.signUp(username, password);
        else await ctx.session.signIn(username, password);
        ctx.navigate("/credits");
      },
    }),
  ];
  if (ctx.config.firebase) {
    forms.push(
      accountForm({
        legend: "Email (Firebase)",
        nameLabel: "Email",
        nameType: "email",
        autocomplete: "email",
        signInText: "Sign in with email",
        signUpText: "Create email account",
        onSubmit: async (email, password, creating) => {
          await ctx.session.firebase(email, password, creating);
          ctx.navigate("/credits");
        },
      }),
    );
  }
  ctx.main.append(
    pageHeading("Sign in to aijobs"),
    ...(ended ? [h("p", { class: "message error", role: "alert" }, ended)] : []),
    h(
      "p",
      { class: "lead" },
      "A new account starts with 10 credits. Usernames are 3-32 letters, digits, dots, dashes or underscores; passwords 8-128 characters.",
    ),
    h("div", { class: "columns" }, ...forms),
  );
}
