// The single page: public config → sign-in (Entra via MSAL, or a pasted local token in development) → GET /me →
// pages by hash route. Each page asks the API for what it shows; the API decides what this caller gets.

import "./styles.css";
import { call, problemText, useTokens, type Config, type Me } from "./api";
import { accessToken, devToken, entraConfigured, initAuth, setDevToken, signInWithEntra, signOut, signedIn } from "./auth";
import { calendarPage } from "./calendar";
import { invoicesPage } from "./invoices";
import { marginsPage } from "./margins";
import { overviewPage } from "./overview";
import { settingsPage } from "./settings";
import { isCustomer, isPartner, isReseller, state } from "./state";
import { field, h, select } from "./ui";

type Page = { path: string; label: string; show: () => boolean; render: (main: HTMLElement) => void | Promise<void> };
const PAGES: Page[] = [
  { path: "invoices", label: "Invoices", show: () => true, render: invoicesPage },
  { path: "calendar", label: "Calendar", show: () => isPartner(), render: calendarPage },
  { path: "margins", label: "Margins and identifiers", show: () => isPartner() || isReseller(), render: marginsPage },
  { path: "overview", label: "Overview", show: () => isPartner() || isReseller(), render: overviewPage },
  { path: "settings", label: "Regional settings", show: () => true, render: settingsPage },
];

const main = document.getElementById("main")!;
const nav = document.getElementById("nav")!;
const who = document.getElementById("who")!;
let config: Config;

async function start(): Promise<void> {
  useTokens(accessToken);
  try {
    config = await call<Config>("GET", "/web/config");
    await initAuth(config);
  } catch (err) { main.replaceChildren(h("p", { class: "error", role: "alert" }, problemText(err))); return; }
  if (!signedIn()) { signInPage(); return; }
  try { state.me = await call<Me>("GET", "/me"); }
  catch (err) { signInPage(problemText(err)); return; }
  const saved = sessionStorage.getItem("recon.tenant");
  state.tenant = state.me.tenants.find((t) => t.tenantId === saved) ?? state.me.tenants[0] ?? null;
  window.removeEventListener("hashchange", route);
  window.addEventListener("hashchange", route);
  route();
}

function header(): void {
  nav.replaceChildren();
  who.replaceChildren();
  const current = location.hash.replace(/^#\/?/, "") || "invoices";
  if (state.tenant) {
    nav.append(h("ul", {}, ...PAGES.filter((p) => p.show()).map((p) =>
      h("li", {}, h("a", { href: `#/${p.path}`, "aria-current": p.path === current ? "page" : null }, p.label)))));
  }
  if (state.me && state.me.tenants.length > 1) {
    const picker = select("tenant", state.me.tenants.map((t) => [t.tenantId, t.displayName]), state.tenant?.tenantId);
    picker.addEventListener("change", () => {
      state.tenant = state.me!.tenants.find((t) => t.tenantId === picker.value) ?? null;
      sessionStorage.setItem("recon.tenant", picker.value);
      route();
    });
    who.append(field("Tenant", picker));
  } else if (state.tenant) who.append(h("span", { class: "tenant" }, state.tenant.displayName));
  if (state.tenant) who.append(h("span", { class: "role" }, roleLabel()));
  who.append(h("button", { type: "button", class: "secondary", onclick: async () => { await signOut(); location.hash = ""; location.reload(); } }, "Sign out"));
}

function roleLabel(): string {
  if (isPartner()) return state.tenant!.roles.includes("partnerAdmin") ? "Partner admin" : "Partner reader";
  if (isReseller()) return `Reseller ${state.tenant!.resellerIds.join(", ")}`;
  if (isCustomer()) return "Customer";
  return "";
}

async function route(): Promise<void> {
  header();
  main.replaceChildren();
  if (!state.tenant) {
    main.append(h("h1", {}, "No access yet"), h("p", {}, "You are signed in, but no partner has given you a role in a tenant. Ask your partner's administrator to grant you access."));
    return;
  }
  const path = location.hash.replace(/^#\/?/, "") || "invoices";
  const page = PAGES.find((p) => p.path === path && p.show()) ?? PAGES[0];
  document.title = `${page.label} · CSP reconciliation`;
  await page.render(main);
  main.focus({ preventScroll: true });
}

function signInPage(problem?: string): void {
  nav.replaceChildren();
  who.replaceChildren();
  main.replaceChildren(h("h1", {}, "Sign in"));
  if (problem) main.append(h("p", { class: "error", role: "alert" }, problem));
  if (entraConfigured()) {
    main.append(h("p", {}, "Sign in with your work account (Microsoft Entra ID)."),
      h("button", { type: "button", onclick: () => signInWithEntra() }, "Sign in with Microsoft"));
  } else if (!config.devSignIn) {
    main.append(h("p", {}, "Sign-in is not configured for this site (WEB_CLIENT_ID, WEB_AUTHORITY, WEB_API_SCOPE)."));
  }
  if (config.devSignIn) {
    const token = h("textarea", { name: "token", rows: 4, required: true, spellcheck: "false", autocomplete: "off" }, devToken() || "");
    main.append(h("form", { class: "card", "aria-labelledby": "dev-h", onsubmit: (e: Event) => {
      e.preventDefault();
      setDevToken(token.value);
      start();
    } }, h("h2", { id: "dev-h" }, "Development sign-in"),
      h("p", {}, "This app trusts the local token issuer. Mint a token and paste it here:"),
      h("pre", {}, h("code", {}, ".venv/bin/python -m devtools.tokens mint --role partnerAdmin --tenant <tenant id>")),
      field("Access token", token), h("div", { class: "actions" }, h("button", { type: "submit" }, "Sign in"))));
  }
}

start();
