// What the page knows about the signed-in caller: its standing in each tenant (from GET /api/me) and the
// tenant it is looking at. Which pages are offered follows the role; what each page shows is what the API sent.

import type { Me, Standing } from "./api";

export const TYPES: [string, string][] = [["onetime", "One Time"], ["license", "License"], ["usage", "Usage"], ["dailyratedusage", "Daily rated usage"]];
export const CUSTOMER_TYPES = new Set(["onetime", "license"]);

export const state: { me: Me | null; tenant: Standing | null } = { me: null, tenant: null };

export function isPartner(s: Standing | null = state.tenant): boolean {
  return Boolean(s && (s.roles.includes("partnerAdmin") || s.roles.includes("partnerReader")));
}
export function isAdmin(s: Standing | null = state.tenant): boolean { return Boolean(s?.roles.includes("partnerAdmin")); }
export function isReseller(s: Standing | null = state.tenant): boolean { return Boolean(s?.roles.includes("reseller")) && !isPartner(s); }
export function isCustomer(s: Standing | null = state.tenant): boolean { return Boolean(s?.roles.includes("customer")) && !isPartner(s) && !isReseller(s); }

/** The file types this caller may have files of: customers get customer views of One Time and License only. */
export function typesFor(s: Standing | null = state.tenant): [string, string][] {
  return isCustomer(s) ? TYPES.filter(([t]) => CUSTOMER_TYPES.has(t)) : TYPES;
}

export function tenantPath(): string {
  return `/tenants/${state.tenant!.tenantId}`;
}

export interface CsvFormat { delimiter: string; decimalSeparator: string; dateFormat: string }
const CSV_KEY = "recon.csvFormat";
export function csvFormat(): CsvFormat | null {
  try { return JSON.parse(localStorage.getItem(CSV_KEY) || "null"); } catch { return null; }
}
export function saveCsvFormat(value: CsvFormat | null): void {
  if (value) localStorage.setItem(CSV_KEY, JSON.stringify(value)); else localStorage.removeItem(CSV_KEY);
}
