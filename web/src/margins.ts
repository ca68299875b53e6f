// Margins and identifiers: rules (list, add, end-date, delete) with the API's validation messages, and the
// identifiers table with the CSV bulk import and its per-row errors. The API decides what each caller may see.
// Targets are picked by name (GET …/names: what Microsoft's lines call them, only those the caller may price), a
// rule is previewed before it is saved (POST …/margin-rules:preview: the margin engine on the latest invoice), and
// end-dated in one conditional request (PATCH with If-Match).

import { ApiError, call, problemText, type Identifier, type Rule } from "./api";
import { isAdmin, isPartner, tenantPath } from "./state";
import { announce, field, h, money, select, table } from "./ui";

interface TaggedRule extends Rule { etag?: string | null }
interface NameItem { kind: string; id: string; name?: string; customerId?: string; customerName?: string; resellerIds?: string[]; internalId?: string }
interface Change { today: string; new: string; difference: string }
interface Preview { invoiceId: string; invoiceType: string; lines: number; customers: { customerId: string; customerName?: string | null; lines: number; reseller: Change; customer: Change }[]; totals: { reseller: Change; customer: Change } }

const known = new Map<string, string>();  // target id -> name, from every search (the rule table shows names)

function label(item: NameItem): string {
  const name = item.name || "(no name)";
  if (item.kind === "subscription") return `${name} — ${item.customerName || item.customerId || ""}`;
  return name;
}

function targetText(id: string): string {
  const name = known.get(id.toLowerCase());
  return name ? `${name} (${id})` : id;
}

function problemList(err: unknown): HTMLElement {
  const box = h("div", { class: "error", role: "alert" }, h("p", {}, problemText(err)));
  if (err instanceof ApiError && err.problem.errors?.length) {
    box.append(h("ul", {}, ...err.problem.errors.map((e) => h("li", {},
      [e.line ? `Line ${e.line}` : "", e.field ? `${e.field}` : ""].filter(Boolean).join(", ") + (e.line || e.field ? ": " : "") + e.message))));
  }
  return box;
}

export async function marginsPage(main: HTMLElement): Promise<void> {
  main.append(h("h1", {}, "Margins and identifiers"));
  const rulesBox = h("div");
  const identBox = h("div");
  main.append(h("h2", {}, "Margin rules"), rulesBox, h("h2", {}, "Identifiers"), identBox);
  await Promise.all([renderRules(rulesBox), renderIdentifiers(identBox)]);
}

async function renderRules(box: HTMLElement): Promise<void> {
  box.textContent = "";
  let rules: TaggedRule[] = [];
  try { rules = (await call<{ items: TaggedRule[] }>("GET", `${tenantPath()}/margin-rules`)).items; }
  catch (err) { box.append(problemList(err)); return; }
  const unnamed = [...new Set(rules.map((r) => r.targetId.toLowerCase()))].filter((id) => !known.has(id));
  if (unnamed.length) {  // the rule list speaks in names too: ask for the targets' names in one request
    try {
      const params = new URLSearchParams({ ids: unnamed.slice(0, 100).join(","), top: "100" });
      (await call<{ items: NameItem[] }>("GET", `${tenantPath()}/names?${params}`)).items.forEach((i) => { if (i.name) known.set(i.id, i.name); });
    } catch { /* names are a help, not a need: the ids are shown */ }
  }
  const canWrite = isAdmin() || !isPartner();  // partner readers change nothing; resellers may, for their own customers
  box.append(rules.length ? table("Margin rules in force and planned", ["Level", "Target", "Product", "Percent", "From", "To", ...(canWrite ? ["Actions"] : [])],
    rules.map((r) => [r.level, targetText(r.targetId), r.productId || "any", `${r.percent} %`, r.effectiveFrom, r.effectiveTo || "open",
      ...(canWrite ? [ruleActions(r, box)] : [])])) : h("p", { class: "empty" }, "No margin rules you may see."));
  if (canWrite) box.append(ruleForm(box));
}

function ruleActions(rule: TaggedRule, box: HTMLElement): HTMLElement {
  const end = h("input", { type: "date", name: "endDate" });
  const msg = h("div");
  const endDate = async () => {
    msg.textContent = "";
    if (!end.value) { msg.append(h("p", { class: "error", role: "alert" }, "Choose the date the rule ends (exclusive).")); return; }
    // One atomic request: the rule's ETag in If-Match, so a change made meanwhile by someone else is never
    // overwritten (412: the list is read again).
    try {
      await call("PATCH", `${tenantPath()}/margin-rules/${rule.id}`, { effectiveTo: end.value }, { "If-Match": rule.etag || "" });
      announce("Rule end-dated"); await renderRules(box);
    } catch (err) { msg.append(problemList(err)); }
  };
  return h("div", { class: "row-actions" }, field("Ends on", end),
    h("button", { type: "button", class: "secondary", "aria-label": `End-date rule for ${rule.targetId}`, onclick: endDate }, "End-date"),
    h("button", { type: "button", class: "danger", "aria-label": `Delete rule for ${rule.targetId}`, onclick: async () => {
      try { await call("DELETE", `${tenantPath()}/margin-rules/${rule.id}`); announce("Rule deleted"); await renderRules(box); }
      catch (err) { msg.replaceChildren(problemList(err)); }
    } }, "Delete"), msg);
}

function namePicker(level: HTMLSelectElement, target: HTMLInputElement, chosen: HTMLElement): HTMLElement {
  const search = h("input", { type: "search", name: "nameSearch", autocomplete: "off", placeholder: "Type part of a name" });
  const results = h("ul", { class: "picks", "aria-label": "Matching names" });
  const status = h("p", { class: "hint", role: "status" });
  let timer = 0;
  let asked = 0;
  const run = async () => {
    const mine = ++asked;
    const q = search.value.trim();
    if (!q) { results.replaceChildren(); status.textContent = ""; return; }
    try {
      const params = new URLSearchParams({ q, kind: level.value, top: "10" });
      const { items } = await call<{ items: NameItem[] }>("GET", `${tenantPath()}/names?${params}`);
      if (mine !== asked) return;  // a newer search is on its way
      items.forEach((i) => { if (i.name) known.set(i.id, i.name); });
      status.textContent = items.length ? `${items.length} match${items.length === 1 ? "" : "es"}` : "No match among the names Microsoft's lines have shown";
      results.replaceChildren(...items.map((item) => h("li", {}, h("button", { type: "button", class: "link",
        "aria-label": `Choose ${item.kind} ${label(item)}`, onclick: () => {
          target.value = item.id;
          chosen.textContent = `Chosen: ${label(item)} (${item.id})`;
          results.replaceChildren();
          status.textContent = "";
          announce(`${item.kind} ${label(item)} chosen`);
        } }, label(item)), h("span", { class: "hint" }, ` ${item.id}${item.internalId ? ` · ${item.internalId}` : ""}`))));
    } catch (err) { if (mine === asked) results.replaceChildren(h("li", {}, problemList(err))); }
  };
  search.addEventListener("input", () => { window.clearTimeout(timer); timer = window.setTimeout(run, 250); });
  level.addEventListener("change", () => { target.value = ""; chosen.textContent = ""; if (search.value.trim()) run(); });
  return h("div", { class: "picker" }, field("Find by name", search, "Resellers, customers and subscriptions as Microsoft's lines name them"), status, results);
}

function previewTable(p: Preview): HTMLElement {
  const reseller = isPartner();
  const heads = ["Customer", "Lines", "Customer price today", "New customer price", "Difference",
    ...(reseller ? ["Reseller price today", "New reseller price", "Reseller difference"] : [])];
  // exact BigInt formatting to the cent; daily rated usage (6 places) is shown as the API's exact text
  const m = (v: string) => p.invoiceType === "dailyratedusage" ? v : money(v);
  const row = (name: string, lines: number | string, r: Change, c: Change) => [name, String(lines), m(c.today), m(c.new), m(c.difference),
    ...(reseller ? [m(r.today), m(r.new), m(r.difference)] : [])];
  const rows = p.customers.map((c) => row(c.customerName ? `${c.customerName} (${c.customerId})` : c.customerId, c.lines, c.reseller, c.customer));
  rows.push(row("Total", p.lines, p.totals.reseller, p.totals.customer));
  return h("div", { class: "scroll", role: "region", tabindex: "0", "aria-label": "Rule preview" },
    table(`Effect on invoice ${p.invoiceId} (${p.invoiceType}), per customer`, heads, rows, "compact-wide"));
}

function ruleForm(box: HTMLElement): HTMLElement {
  const level = select("level", isPartner() ? [["reseller", "Reseller"], ["customer", "Customer"], ["subscription", "Subscription"]] : [["customer", "Customer"], ["subscription", "Subscription"]]);
  const target = h("input", { name: "targetId", required: true, autocomplete: "off" });
  const chosen = h("p", { class: "chosen", "aria-live": "polite" });
  const percent = h("input", { name: "percent", required: true, inputmode: "decimal", autocomplete: "off" });
  const from = h("input", { name: "effectiveFrom", type: "date", required: true });
  const to = h("input", { name: "effectiveTo", type: "date" });
  const product = h("input", { name: "productId", autocomplete: "off" });
  const msg = h("div");
  const preview = h("div", { class: "preview" });
  const on = select("previewType", [["onetime", "One Time"], ["license", "License"], ["usage", "Usage"], ["dailyratedusage", "Daily rated usage"]], "onetime");
  const body = (): Record<string, string> => {
    const b: Record<string, string> = { level: level.value, targetId: target.value.trim(), percent: percent.value.trim(), effectiveFrom: from.value };
    if (to.value) b.effectiveTo = to.value;
    if (product.value.trim()) b.productId = product.value.trim();
    return b;
  };
  const showPreview = async () => {
    msg.textContent = "";
    preview.replaceChildren(h("p", { class: "hint" }, "Computing the effect on the latest invoice…"));
    try {
      const p = await call<Preview>("POST", `${tenantPath()}/margin-rules:preview`, { ...body(), invoiceType: on.value });
      preview.replaceChildren(p.customers.length ? previewTable(p)
        : h("p", { class: "empty" }, `No line of invoice ${p.invoiceId} is reached by this rule.`));
      announce(`Preview: ${p.customers.length} customers affected`);
    } catch (err) { preview.replaceChildren(); msg.append(problemList(err)); }
  };
  return h("form", { class: "card grid", "aria-label": "Add a margin rule", onsubmit: async (e: Event) => {
    e.preventDefault();
    msg.textContent = "";
    try { await call("POST", `${tenantPath()}/margin-rules`, body()); announce("Rule added"); await renderRules(box); }
    catch (err) { msg.append(problemList(err)); }
  } }, h("h3", {}, "Add a rule"), field("Level", level), namePicker(level, target, chosen),
    field("Target id", target, "Filled by choosing a name; or an MPN id for resellers, a GUID for customers and subscriptions"), chosen,
    field("Percent", percent, "−100 < p ≤ 1000, up to 4 decimals"), field("Effective from", from), field("Effective to (exclusive)", to),
    field("Product id (optional)", product), h("div", { class: "actions" }, field("Preview on the latest", on),
      h("button", { type: "button", class: "secondary", onclick: showPreview }, "Preview effect"),
      h("button", { type: "submit" }, "Add rule")), msg, preview);
}

async function renderIdentifiers(box: HTMLElement): Promise<void> {
  box.textContent = "";
  try {
    const { items } = await call<{ items: Identifier[] }>("GET", `${tenantPath()}/identifiers`);
    box.append(items.length ? h("div", { class: "scroll", role: "region", tabindex: "0", "aria-label": "Identifiers" },
      table("Internal identifiers and PO numbers", ["Kind", "Microsoft id", "Internal id", "Name", "PO number"],
        items.map((i) => [i.kind, i.id, i.internalId || "", i.name || "", i.poNumber || ""])))
      : h("p", { class: "empty" }, "No identifiers you may see."));
  } catch (err) { box.append(problemList(err)); return; }
  if (!isAdmin() && isPartner()) return;
  const csv = h("textarea", { name: "csv", rows: 6, spellcheck: "false" }, "kind,id,internalId,name,poNumber\n");
  const file = h("input", { type: "file", name: "csvFile", accept: ".csv,text/csv" });
  file.addEventListener("change", async () => { if (file.files?.[0]) csv.value = await file.files[0].text(); });
  const msg = h("div");
  box.append(h("form", { class: "card", "aria-label": "Import identifiers from CSV", onsubmit: async (e: Event) => {
    e.preventDefault();
    msg.textContent = "";
    try {
      const result = await call<{ imported: number }>("POST", `${tenantPath()}/identifiers:import`, csv.value, { "Content-Type": "text/csv" });
      announce(`Imported ${result.imported} identifiers`);
      await renderIdentifiers(box);
      box.append(h("p", { role: "status" }, `Imported ${result.imported} identifiers.`));
    } catch (err) { msg.append(problemList(err)); }
  } }, h("h3", {}, "Import from CSV"), h("p", {}, "All or nothing: every bad row is listed with its line."),
    field("CSV file", file), field("CSV text", csv, "Columns: kind,id,internalId,name,poNumber"),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Import")), msg));
}
