// Sign-in. In Azure: Microsoft Entra ID through MSAL.js (redirect flow, loaded only when used). In development
// (the app's public config says devSignIn): a token minted by `python -m devtools.tokens mint …`, pasted into a
// form and kept in this tab's sessionStorage only.

import type { Config } from "./api";

const DEV_KEY = "recon.devToken";
type Msal = import("@azure/msal-browser").PublicClientApplication;
let msal: Msal | null = null;
let config: Config | null = null;

export async function initAuth(cfg: Config): Promise<void> {
  config = cfg;
  if (cfg.clientId && cfg.authority && cfg.apiScope && !devToken()) {
    const { PublicClientApplication } = await import("@azure/msal-browser");
    msal = new PublicClientApplication({
      auth: { clientId: cfg.clientId, authority: cfg.authority, redirectUri: `${location.origin}/api/app/` },
      cache: { cacheLocation: "sessionStorage" },
    });
    await msal.initialize();
    const result = await msal.handleRedirectPromise();
    if (result?.account) msal.setActiveAccount(result.account);
    else if (!msal.getActiveAccount() && msal.getAllAccounts().length) msal.setActiveAccount(msal.getAllAccounts()[0]);
  }
}

export function devToken(): string | null {
  return sessionStorage.getItem(DEV_KEY);
}

export function setDevToken(token: string): void {
  sessionStorage.setItem(DEV_KEY, token.trim());
}

export function entraConfigured(): boolean {
  return Boolean(config?.clientId && config.authority && config.apiScope);
}

export function signedIn(): boolean {
  return Boolean(devToken() || msal?.getActiveAccount());
}

export async function signInWithEntra(): Promise<void> {
  if (!config || !entraConfigured()) return;
  if (!msal) await initAuth(config);
  await msal!.loginRedirect({ scopes: [config.apiScope!] });
}

export async function accessToken(): Promise<string | null> {
  const dev = devToken();
  if (dev) return dev;
  if (!msal || !config?.apiScope) return null;
  const account = msal.getActiveAccount();
  if (!account) return null;
  try {
    return (await msal.acquireTokenSilent({ scopes: [config.apiScope], account })).accessToken;
  } catch {
    await msal.acquireTokenRedirect({ scopes: [config.apiScope], account });
    return null;
  }
}

export async function signOut(): Promise<void> {
  sessionStorage.removeItem(DEV_KEY);
  if (msal?.getActiveAccount()) await msal.logoutRedirect();
}
