// The Invoices page: per file type (tabs), Microsoft's invoices (partners) or the invoices the caller has files
// of (resellers, customers), each with its files: Generate per view, live status (Queued → Processing with rows
// so far → Available / Failed with the reason), Download, Regenerate, versions and a preview of the lines.
// Approval: partners see whether a version is approved and partner admins approve it; resellers and customers
// see approved versions only (a file nobody approved yet shows as awaiting approval, with nothing to download).

import { call, problemText, type FileRecord, type Invoice, type Version } from "./api";
import { csvFormat, isAdmin, isPartner, isReseller, state, tenantPath, typesFor } from "./state";
import { announce, day, field, h, money, select, table } from "./ui";

const SETTLED = new Set(["Available", "NeedsReview", "Failed"]);
const DOWNLOADABLE = new Set(["Available", "NeedsReview"]);
const REGENERABLE = new Set(["Available", "NeedsReview", "Failed"]);
const AWAITING = "AwaitingApproval";  // a reseller's or customer's file with no approved version yet
let currentType = "onetime";
let invoices: Invoice[] = [];
let files: FileRecord[] = [];
let polling = new Map<string, number>();

export async function invoicesPage(main: HTMLElement): Promise<void> {
  for (const t of polling.values()) clearTimeout(t);
  polling = new Map();
  const types = typesFor();
  if (!types.some(([t]) => t === currentType)) currentType = types[0][0];
  const panel = h("div", { id: "type-panel", role: "tabpanel", tabindex: "0" });
  const tabs = h("div", { role: "tablist", "aria-label": "Invoice type", class: "tabs" });
  const buttons = types.map(([value, label], i) => h("button", {
    role: "tab", id: `tab-${value}`, "aria-controls": "type-panel", "aria-selected": String(value === currentType),
    tabindex: value === currentType ? "0" : "-1",
    onclick: () => select_(value),
    onkeydown: (e: Event) => {
      const key = (e as KeyboardEvent).key;
      const step = key === "ArrowRight" ? 1 : key === "ArrowLeft" ? -1 : 0;
      if (step) { const next = types[(i + step + types.length) % types.length][0]; select_(next); document.getElementById(`tab-${next}`)?.focus(); }
    },
  }, label));
  tabs.append(...buttons);
  const select_ = (value: string) => {
    currentType = value;
    for (const b of buttons) { const on = b.id === `tab-${value}`; b.setAttribute("aria-selected", String(on)); b.tabIndex = on ? 0 : -1; }
    panel.setAttribute("aria-labelledby", `tab-${value}`);
    renderPanel(panel);
  };
  const error = h("p", { class: "error", role: "alert" });
  main.append(h("h1", {}, "Invoices"), tabs, panel, error);
  panel.setAttribute("aria-labelledby", `tab-${currentType}`);
  panel.append(h("p", {}, "Loading…"));
  try {
    [invoices, files] = await Promise.all([
      isPartner() ? call<{ items: Invoice[] }>("GET", `${tenantPath()}/invoices`).then((r) => r.items) : Promise.resolve([]),
      call<{ items: FileRecord[] }>("GET", `${tenantPath()}/reconciliation-files`).then((r) => r.items),
    ]);
  } catch (err) {
    panel.textContent = "";
    error.textContent = problemText(err);
    return;
  }
  renderPanel(panel);
  for (const f of files) if (!SETTLED.has(f.status)) watch(f.id);
}

function renderPanel(panel: HTMLElement): void {
  panel.textContent = "";
  const ofType = files.filter((f) => f.invoiceType === currentType);
  let rows: { id: string; invoice?: Invoice }[];
  if (isPartner()) {
    rows = invoices.filter((i) => i.fileTypes.includes(currentType))
      .sort((a, b) => (b.invoiceDate || "").localeCompare(a.invoiceDate || "")).map((invoice) => ({ id: invoice.id, invoice }));
  } else {
    rows = [...new Set(ofType.map((f) => f.invoiceId))].sort().reverse().map((id) => ({ id }));
    panel.append(requestForm());
  }
  if (!rows.length) {
    panel.append(h("p", { class: "empty" }, isPartner() ? "Microsoft has no invoice with this type yet."
      : "No files of this type yet. Ask for one above with the invoice number your partner gave you."));
    return;
  }
  for (const row of rows) panel.append(invoiceCard(row.id, row.invoice, ofType.filter((f) => f.invoiceId === row.id)));
}

function invoiceCard(id: string, invoice: Invoice | undefined, its: FileRecord[]): HTMLElement {
  const facts = invoice ? h("dl", { class: "facts" },
    h("dt", {}, "Invoice date"), h("dd", {}, day(invoice.invoiceDate)),
    h("dt", {}, "Billing period"), h("dd", {}, `${day(invoice.billingPeriodStart)} – ${day(invoice.billingPeriodEnd)}`),
    h("dt", {}, "Total"), h("dd", {}, money(invoice.totalCharges, invoice.currency)),
    h("dt", {}, "Document"), h("dd", {}, invoice.documentType || "invoice")) : null;
  const list = h("div", { class: "files" });
  for (const f of its) list.append(fileRow(f));
  return h("section", { class: "card invoice", "aria-labelledby": `inv-${id}-${currentType}` },
    h("h2", { id: `inv-${id}-${currentType}` }, `Invoice ${id}`), facts, list, generateForm(id, list));
}

function viewOptions(): [string, string][] {
  const t = state.tenant!;
  if (isPartner()) return [["partner", "Partner (every line)"], ["reseller", "Reseller view…"], ...(currentType === "onetime" || currentType === "license" ? [["customer", "Customer view…"] as [string, string]] : [])];
  if (isReseller()) return t.resellerIds.map((r) => [`reseller:${r}`, `Reseller ${r}`]);
  return t.customerIds.map((c) => [`customer:${c}`, `Customer ${c}`]);
}

function requestBody(invoiceId: string, view: string, target: string): Record<string, unknown> {
  const [kind, own] = view.split(":");
  const body: Record<string, unknown> = { invoiceType: currentType, invoiceId };
  if (kind === "reseller") { body.view = "reseller"; body.resellerId = own || target.trim(); }
  if (kind === "customer") { body.view = "customer"; body.customerId = own || target.trim(); }
  const fmt = csvFormat();
  if (fmt) body.csvFormat = fmt;
  return body;
}

function generateForm(invoiceId: string, list: HTMLElement, invoiceInput?: HTMLInputElement): HTMLElement {
  const view = select("view", viewOptions());
  view.id = `view-${invoiceId || "new"}-${currentType}`;
  const target = h("input", { name: "target", autocomplete: "off", placeholder: "MPN id or customer id" });
  const targetField = field("Reseller or customer id", target);
  const sync = () => { targetField.hidden = !(view.value === "reseller" || view.value === "customer"); };
  view.addEventListener("change", sync);
  sync();
  const msg = h("p", { class: "error", role: "alert" });
  const button = h("button", { type: "submit" }, "Generate");
  button.setAttribute("aria-label", invoiceInput ? "Generate" : `Generate for invoice ${invoiceId}`);
  return h("form", { class: "generate", onsubmit: async (e: Event) => {
    e.preventDefault();
    msg.textContent = "";
    const invoice = invoiceInput ? invoiceInput.value.trim() : invoiceId;
    try {
      const record = await call<FileRecord>("POST", `${tenantPath()}/reconciliation-files`, requestBody(invoice, view.value, target.value));
      upsert(record);
      if (invoiceInput) { renderPanel(document.getElementById("type-panel")!); }
      else if (!document.getElementById(`file-${record.id}`)) list.append(fileRow(record));
      else replaceRow(record);
      announce(`File for invoice ${invoice}: ${record.status}`);
      watch(record.id);
    } catch (err) { msg.textContent = problemText(err); }
  } }, field("View", view), targetField, button, msg);
}

function requestForm(): HTMLElement {
  const input = h("input", { name: "invoiceId", autocomplete: "off", required: true, pattern: "[A-Za-z0-9-]{1,32}" });
  const wrap = h("section", { class: "card", "aria-labelledby": "req-h" }, h("h2", { id: "req-h" }, "Request a file"));
  wrap.append(field("Invoice number", input));
  wrap.append(generateForm("", h("div"), input));
  return wrap;
}

function upsert(record: FileRecord): void {
  const i = files.findIndex((f) => f.id === record.id);
  if (i >= 0) files[i] = record; else files.push(record);
}

function viewLabel(f: FileRecord): string {
  if (f.view === "reseller") return `Reseller ${f.resellerId}`;
  if (f.view === "customer") return `Customer ${f.customerId}`;
  return "Partner";
}

function statusText(f: FileRecord): string {
  if (f.status === "Processing") {
    const rows = `Processing: ${(f.progressRows ?? 0).toLocaleString("en-US")} rows so far`;
    return f.partsTotal ? `${rows} (${f.partsDone ?? 0} of ${f.partsTotal} parts)` : rows;  // fanned out across instances
  }
  if (f.status === "Failed") return `Failed: ${f.error || f.reason}`;
  if (f.status === "Available" || f.status === "NeedsReview") return `${f.status}: ${(f.rowCount ?? 0).toLocaleString("en-US")} rows`;
  if (f.status === AWAITING) return "Awaiting the partner's approval";
  return f.status;
}

function approvalText(f: FileRecord): string {
  if (!isPartner() || !DOWNLOADABLE.has(f.status)) return "";
  if (f.approvedVersion === f.version) return `Approved by ${f.approvedBy === "automatic" ? "auto-approval" : f.approvedBy} on ${day(f.approvedAt || undefined)}`;
  if (f.approvedVersion) return `Version ${f.approvedVersion} approved; version ${f.version} awaits approval`;
  return "Awaits approval: resellers and customers do not see it yet";
}

async function approve(f: FileRecord, details: HTMLElement): Promise<void> {
  try {
    const record = await call<FileRecord>("POST", `${tenantPath()}/reconciliation-files/${f.id}/versions/${f.version}:approve`);
    upsert(record);
    replaceRow(record);
    announce(`Version ${record.version} approved`);
  } catch (err) { details.replaceChildren(h("p", { class: "error", role: "alert" }, problemText(err))); }
}

function fileRow(f: FileRecord): HTMLElement {
  const currency = f.currency || "";
  const totals = f.totals ? h("dl", { class: "facts totals" },
    ...("cost" in f.totals && f.totals.cost != null ? [h("dt", {}, "Cost"), h("dd", {}, money(f.totals.cost, currency))] : []),
    ...(f.totals.reseller != null ? [h("dt", {}, "Reseller total"), h("dd", {}, money(f.totals.reseller, currency))] : []),
    h("dt", {}, "Customer total"), h("dd", {}, money(f.totals.customer, currency))) : null;
  const details = h("div", { class: "details" });
  const actions = h("div", { class: "actions" });
  const label = `${viewLabel(f)} file of invoice ${f.invoiceId}`;
  if (DOWNLOADABLE.has(f.status)) actions.append(h("button", { type: "button", "aria-label": `Download ${label}`, onclick: () => download(f, null, details) }, "Download"));
  if (isAdmin() && DOWNLOADABLE.has(f.status) && f.approvedVersion !== f.version) actions.append(h("button", { type: "button", "aria-label": `Approve version ${f.version} of ${label}`, onclick: () => approve(f, details) }, "Approve"));
  if (REGENERABLE.has(f.status)) actions.append(h("button", { type: "button", class: "secondary", "aria-label": `Regenerate ${label}`, onclick: () => regenerate(f, details) }, "Regenerate"));
  if (f.status !== AWAITING) {
    actions.append(h("button", { type: "button", class: "secondary", "aria-label": `Versions of ${label}`, onclick: () => versions(f, details) }, "Versions"));
    actions.append(h("button", { type: "button", class: "secondary", "aria-label": `Lines of ${label}`, onclick: () => lines(f, details) }, "Lines"));
  }
  return h("article", { class: `file status-${f.status.toLowerCase()}`, id: `file-${f.id}`, "aria-label": label },
    h("div", { class: "file-head" }, h("strong", {}, viewLabel(f)), h("span", { class: "status", "data-status": f.status }, statusText(f)),
      ...(f.status === AWAITING ? [] : [h("span", { class: "muted" }, `version ${f.version} · ${f.reason}`)])),
    approvalText(f) ? h("p", { class: "approval", "data-approved": String(f.approvedVersion === f.version) }, approvalText(f)) : null,
    totals, actions, details);
}

function replaceRow(f: FileRecord): void {
  const old = document.getElementById(`file-${f.id}`);
  if (!old) return;
  const focused = old.contains(document.activeElement) ? (document.activeElement as HTMLElement).textContent : null;
  const fresh = fileRow(f);
  old.replaceWith(fresh);
  if (focused) [...fresh.querySelectorAll("button")].find((b) => b.textContent === focused)?.focus();
}

function watch(id: string): void {
  if (polling.has(id)) return;
  const tick = async () => {
    try {
      const f = await call<FileRecord>("GET", `${tenantPath()}/reconciliation-files/${id}`);
      const before = files.find((x) => x.id === id);
      upsert(f);
      if (!before || before.status !== f.status || before.progressRows !== f.progressRows
          || before.partsDone !== f.partsDone) replaceRow(f);
      if (before?.status !== f.status) announce(`Invoice ${f.invoiceId}, ${viewLabel(f)}: ${f.status}`);
      if (SETTLED.has(f.status)) { polling.delete(id); return; }
      if (f.status === AWAITING) { polling.set(id, window.setTimeout(tick, 15000)); return; }  // approval takes a person
    } catch { /* a transient network error: try again */ }
    polling.set(id, window.setTimeout(tick, 1000));
  };
  polling.set(id, window.setTimeout(tick, 500));
}

async function download(f: FileRecord, version: number | null, details: HTMLElement): Promise<void> {
  const path = `${tenantPath()}/reconciliation-files/${f.id}${version ? `/versions/${version}` : ""}/download`;
  try {
    const link = await call<{ url: string }>("GET", path);
    const a = h("a", { href: link.url, download: "" });
    document.body.append(a);
    a.click();
    a.remove();
    announce("Download started");
  } catch (err) { details.replaceChildren(h("p", { class: "error", role: "alert" }, problemText(err))); }
}

async function regenerate(f: FileRecord, details: HTMLElement): Promise<void> {
  try {
    const record = await call<FileRecord>("POST", `${tenantPath()}/reconciliation-files/${f.id}/regenerate`);
    upsert(record);
    replaceRow(record);
    announce(`Regenerating: version ${record.version}`);
    watch(record.id);
  } catch (err) { details.replaceChildren(h("p", { class: "error", role: "alert" }, problemText(err))); }
}

async function versions(f: FileRecord, details: HTMLElement): Promise<void> {
  try {
    const { items } = await call<{ items: (Version & { downloadable?: boolean })[] }>("GET", `${tenantPath()}/reconciliation-files/${f.id}/versions`);
    details.replaceChildren(table(`Versions of the ${viewLabel(f)} file`, ["Version", "Why it was made", "Status", "Approved", "Made", "Rows", ""],
      items.map((v) => [String(v.version) + (v.current ? " (current)" : ""), v.reason, v.status, v.approved ? `yes, ${day(v.approvedAt || undefined)}` : "no", day(v.completedAt || v.createdAt),
        v.rowCount != null ? v.rowCount.toLocaleString("en-US") : "—",
        v.downloadable ? h("button", { type: "button", class: "link", "aria-label": `Download version ${v.version}`, onclick: () => download(f, v.version, details) }, "Download") : ""])));
  } catch (err) { details.replaceChildren(h("p", { class: "error", role: "alert" }, problemText(err))); }
}

const LINES_POLLS = 40;  // a 202 is asked again at its Retry-After, this many times at most (~10 minutes)

async function lines(f: FileRecord, details: HTMLElement, polls = 0): Promise<void> {
  const params = new URLSearchParams({ type: f.invoiceType, view: f.view, pageSize: "20" });
  if (f.resellerId) params.set("resellerId", f.resellerId);
  if (f.customerId) params.set("customerId", f.customerId);
  try {
    const page = await call<{ items?: Record<string, unknown>[]; retryAfter?: number }>("GET", `${tenantPath()}/invoices/${f.invoiceId}/charges?${params}`);
    if (!page.items) {  // 202: the invoice's lines are being fetched from Microsoft (its snapshot is queued)
      const wait = Math.min(Math.max(page.retryAfter ?? 5, 1), 60);
      if (polls >= LINES_POLLS) {
        details.replaceChildren(h("p", { role: "status" }, "Microsoft's lines are still being fetched; open Lines again later."));
        return;
      }
      const notice = h("p", { role: "status" }, `Microsoft's lines are being fetched; looking again in ${wait} seconds.`);
      details.replaceChildren(notice);
      // asked again only while the notice is still shown: another button (or page) in its place stops the poll
      setTimeout(() => { if (notice.isConnected) void lines(f, details, polls + 1); }, wait * 1000);
      return;
    }
    const columns = [...new Set(page.items.flatMap((item) => Object.keys(item)))];
    const grid = table(`First ${page.items.length} lines, ${viewLabel(f)} view`, columns,
      page.items.map((item) => columns.map((c) => item[c] == null ? "" : String(item[c]))), "lines");
    details.replaceChildren(h("div", { class: "scroll", role: "region", tabindex: "0", "aria-label": `Lines of the ${viewLabel(f)} file` }, grid));
  } catch (err) { details.replaceChildren(h("p", { class: "error", role: "alert" }, problemText(err))); }
}

