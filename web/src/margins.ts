// Margins and identifiers: rules (list, add, end-date, delete) with the API's validation messages, and the
// identifiers table with the CSV bulk import and its per-row errors. The API decides what each caller may see.

import { ApiError, call, problemText, type Identifier, type Rule } from "./api";
import { isAdmin, isPartner, tenantPath } from "./state";
import { announce, field, h, select, table } from "./ui";

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
  let rules: Rule[] = [];
  try { rules = (await call<{ items: Rule[] }>("GET", `${tenantPath()}/margin-rules`)).items; }
  catch (err) { box.append(problemList(err)); return; }
  const canWrite = isAdmin() || !isPartner();  // partner readers change nothing; resellers may, for their own customers
  box.append(rules.length ? table("Margin rules in force and planned", ["Level", "Target", "Product", "Percent", "From", "To", ...(canWrite ? ["Actions"] : [])],
    rules.map((r) => [r.level, r.targetId, r.productId || "any", `${r.percent} %`, r.effectiveFrom, r.effectiveTo || "open",
      ...(canWrite ? [ruleActions(r, box)] : [])])) : h("p", { class: "empty" }, "No margin rules you may see."));
  if (canWrite) box.append(ruleForm(box));
}

function ruleActions(rule: Rule, box: HTMLElement): HTMLElement {
  const end = h("input", { type: "date", name: "endDate" });
  const msg = h("div");
  const endDate = async () => {
    msg.textContent = "";
    if (!end.value) { msg.append(h("p", { class: "error", role: "alert" }, "Choose the date the rule ends (exclusive).")); return; }
    // No PATCH in the API: the rule is deleted and added again with its end; if the new one is refused the old
    // one is put back as it was.
    const { id: _, ...fields } = rule;
    try {
      await call("DELETE", `${tenantPath()}/margin-rules/${rule.id}`);
      try { await call("POST", `${tenantPath()}/margin-rules`, { ...fields, effectiveTo: end.value }); }
      catch (err) { await call("POST", `${tenantPath()}/margin-rules`, fields); throw err; }
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

function ruleForm(box: HTMLElement): HTMLElement {
  const level = select("level", isPartner() ? [["reseller", "Reseller"], ["customer", "Customer"], ["subscription", "Subscription"]] : [["customer", "Customer"], ["subscription", "Subscription"]]);
  const target = h("input", { name: "targetId", required: true, autocomplete: "off" });
  const percent = h("input", { name: "percent", required: true, inputmode: "decimal", autocomplete: "off" });
  const from = h("input", { name: "effectiveFrom", type: "date", required: true });
  const to = h("input", { name: "effectiveTo", type: "date" });
  const product = h("input", { name: "productId", autocomplete: "off" });
  const msg = h("div");
  return h("form", { class: "card grid", "aria-label": "Add a margin rule", onsubmit: async (e: Event) => {
    e.preventDefault();
    msg.textContent = "";
    const body: Record<string, string> = { level: level.value, targetId: target.value.trim(), percent: percent.value.trim(), effectiveFrom: from.value };
    if (to.value) body.effectiveTo = to.value;
    if (product.value.trim()) body.productId = product.value.trim();
    try { await call("POST", `${tenantPath()}/margin-rules`, body); announce("Rule added"); await renderRules(box); }
    catch (err) { msg.append(problemList(err)); }
  } }, h("h3", {}, "Add a rule"), field("Level", level), field("Target id", target, "MPN id for resellers, GUID for customers and subscriptions"),
    field("Percent", percent, "−100 < p ≤ 1000, up to 4 decimals"), field("Effective from", from), field("Effective to (exclusive)", to),
    field("Product id (optional)", product), h("div", { class: "actions" }, h("button", { type: "submit" }, "Add rule")), msg);
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
