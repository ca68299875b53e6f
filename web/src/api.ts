// The API client: every call carries the signed-in user's token; errors are RFC 9457 problem details, shown in
// plain words (title, detail, and each field's message).

export interface Problem { status: number; title: string; detail?: string; errors?: { field?: string | null; message: string; line?: number }[] }

export class ApiError extends Error {
  constructor(public problem: Problem) { super(problem.detail || problem.title); }
}

let tokenSource: () => Promise<string | null> = async () => null;
export function useTokens(source: () => Promise<string | null>): void { tokenSource = source; }

export async function call<T>(method: string, path: string, body?: unknown, extra: Record<string, string> = {}): Promise<T> {
  const token = await tokenSource();
  const headers: Record<string, string> = { Accept: "application/json", ...extra };
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload: BodyInit | undefined;
  if (typeof body === "string") payload = body;
  else if (body !== undefined) { payload = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
  let resp: Response;
  try {
    resp = await fetch(`/api${path}`, { method, headers, body: payload, cache: "no-store" });
  } catch {
    throw new ApiError({ status: 0, title: "The service cannot be reached", detail: "Check your connection and try again." });
  }
  if (resp.status === 204) return undefined as T;
  const text = await resp.text();
  let data: unknown = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const p = (data && typeof data === "object" ? data : {}) as Partial<Problem>;
    throw new ApiError({ status: resp.status, title: p.title || resp.statusText || "Request failed", detail: p.detail, errors: p.errors });
  }
  return data as T;
}

export function problemText(err: unknown): string {
  if (err instanceof ApiError) {
    const p = err.problem;
    const head = p.status === 401 ? "Your sign-in has expired or is not valid. Sign in again."
      : p.detail ? `${p.title}: ${p.detail}` : p.title;
    return head;
  }
  return err instanceof Error ? err.message : String(err);
}

// ---- the API's shapes (only what the page reads) ----

export interface Me { objectId: string; tenantId: string; tenants: Standing[] }
export interface Standing { tenantId: string; displayName: string; roles: string[]; resellerIds: string[]; customerIds: string[] }
export interface Invoice { id: string; invoiceDate?: string; billingPeriodStart?: string; billingPeriodEnd?: string; totalCharges?: string; currency?: string; documentType?: string; fileTypes: string[] }
export interface Totals { cost?: string | null; microsoftTotal?: string | null; reseller?: string | null; customer: string }
export interface FileRecord {
  id: string; invoiceType: string; invoiceId: string; view: string; resellerId?: string | null; customerId?: string | null;
  status: string; version: number; reason: string; createdAt: string; completedAt?: string | null; rowCount?: number | null;
  progressRows?: number | null; partsDone?: number | null; partsTotal?: number | null; totals?: Totals | null; currency?: string | null; error?: string | null; transient?: boolean | null;
  fileName?: string | null; billingPeriodStart?: string | null;
  approvedVersion?: number | null; approvedBy?: string | null; approvedAt?: string | null;
}
export interface Version { version: number; reason: string; status: string; createdAt?: string; completedAt?: string; rowCount?: number; current?: boolean; dataVersion?: string | null; approved?: boolean; approvedBy?: string | null; approvedAt?: string | null }
export interface Rule { id: string; level: string; targetId: string; percent: string; effectiveFrom: string; effectiveTo?: string | null; productId?: string | null }
export interface Identifier { kind: string; id: string; internalId?: string | null; name?: string | null; poNumber?: string | null }
export interface CalendarEntry { fileType: string; periodStart: string; periodEnd: string; expectedDate: string; invoiceAppeared: boolean; invoiceIds: string[]; filesExist: boolean; late: boolean; files: { id: string; invoiceId: string; status: string; version: number }[] }
export interface Config { clientId: string | null; authority: string | null; apiScope: string | null; devSignIn: boolean }
