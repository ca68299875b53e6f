// Overview (partners and resellers): per month, cost vs reseller vs customer totals, and the top customers by
// margin — drawn in inline SVG from the file records' totals the API returns to this caller (a reseller's
// records carry no cost, so it has no cost bars) — and the consumption alerts raised (budgets and spikes).

import { call, problemText, type FileRecord } from "./api";
import { isPartner, tenantPath } from "./state";
import { share, units } from "./decimal";
import { h, money, svg, table } from "./ui";

const SERIES: [keyof Sums, string, string][] = [["cost", "Cost", "bar-cost"], ["reseller", "Reseller", "bar-reseller"], ["customer", "Customer", "bar-customer"]];
interface Sums { cost: bigint; reseller: bigint; customer: bigint; hasCost: boolean }

const exact = (text: string | null | undefined): bigint => (text ? units(text) ?? 0n : 0n);

export async function overviewPage(main: HTMLElement): Promise<void> {
  main.append(h("h1", {}, "Overview"));
  let files: FileRecord[];
  try { files = (await call<{ items: FileRecord[] }>("GET", `${tenantPath()}/reconciliation-files`)).items; }
  catch (err) { main.append(h("p", { class: "error", role: "alert" }, problemText(err))); return; }
  const done = files.filter((f) => (f.status === "Available" || f.status === "NeedsReview") && f.totals);
  const main_view = isPartner() ? "partner" : "reseller";
  const months = new Map<string, Sums>();
  for (const f of done.filter((x) => x.view === main_view)) {
    const month = (f.billingPeriodStart || f.completedAt || f.createdAt).slice(0, 7);
    const s = months.get(month) ?? { cost: 0n, reseller: 0n, customer: 0n, hasCost: false };
    if (f.totals!.cost != null) { s.cost += exact(f.totals!.cost); s.hasCost = true; }
    s.reseller += exact(f.totals!.reseller ?? "0");
    s.customer += exact(f.totals!.customer);
    months.set(month, s);
  }
  main.append(h("h2", {}, "Totals per month"));
  if (!months.size) main.append(h("p", { class: "empty" }, "No finished files yet: generate some on the Invoices page."));
  else main.append(chart([...months.entries()].sort(([a], [b]) => a.localeCompare(b))));

  const margins = new Map<string, bigint>();
  for (const f of done.filter((x) => x.view === "customer" && x.customerId)) {
    margins.set(f.customerId!, (margins.get(f.customerId!) ?? 0n) + exact(f.totals!.customer) - exact(f.totals!.reseller ?? "0"));
  }
  const top = [...margins.entries()].sort(([, a], [, b]) => (b > a ? 1 : b < a ? -1 : 0)).slice(0, 10);
  main.append(h("h2", {}, "Top customers by margin"));
  main.append(top.length ? table("Customer total minus reseller total, summed over customer-view files", ["Customer", "Margin"],
    top.map(([c, m]) => [c, money(m)])) : h("p", { class: "empty" }, "No customer-view files yet."));

  main.append(h("h2", {}, "Consumption alerts"));
  try {
    const { items } = await call<{ items: UsageAlert[] }>("GET", `${tenantPath()}/alerts`);
    main.append(items.length ? table("Budgets exceeded and usage spikes, newest first", ["Customer", "Alert", "Month or day", "Usage", "Budget or average"],
      items.map((a) => a.kind === "budgetExceeded"
        ? [a.customerId, "Budget exceeded", a.key, money(a.data.spent, a.data.currency), money(a.data.budget, a.data.currency)]
        : [a.customerId, `Spike (over ${a.data.spikePercent} %)`, a.key, money(a.data.amount, a.data.currency), money(a.data.trailingAverage, a.data.currency)]))
      : h("p", { class: "empty" }, "No consumption alerts. Set a customer's monthly budget to be told when its Azure usage goes over it."));
  } catch (err) { main.append(h("p", { class: "error", role: "alert" }, problemText(err))); }
}

interface UsageAlert { id: string; kind: string; customerId: string; key: string; raisedAt: string; data: Record<string, string | undefined> }

function chart(rows: [string, Sums][]): HTMLElement {
  const series = SERIES.filter(([key]) => key !== "cost" || rows.some(([, s]) => s.hasCost));
  const max = rows.flatMap(([, s]) => series.map(([k]) => s[k] as bigint)).reduce((a, b) => (b > a ? b : a), 0n);
  const bar = 34, gap = 44, left = 96, height = 220, top = 10;
  const width = left + rows.length * (series.length * bar + gap) + 10;
  const g = svg("svg", { viewBox: `0 0 ${width} ${height + 40}`, width, preserveAspectRatio: "xMinYMin meet", role: "img", class: "chart", "aria-labelledby": "chart-title chart-desc" },
    svg("title", { id: "chart-title" }, "Totals per month"),
    svg("desc", { id: "chart-desc" }, rows.map(([m, s]) => `${m}: ${series.map(([k, label]) => `${label} ${money(s[k] as bigint)}`).join(", ")}`).join("; ")));
  g.append(svg("line", { x1: left - 4, y1: top + height, x2: width, y2: top + height, class: "axis" }));
  g.append(svg("text", { x: left - 8, y: top + 10, class: "tick", "text-anchor": "end" }, money(max)));
  g.append(svg("text", { x: left - 8, y: top + height, class: "tick", "text-anchor": "end" }, "0"));
  rows.forEach(([month, s], i) => {
    const x0 = left + i * (series.length * bar + gap);
    series.forEach(([key, , cls], j) => {
      const value = s[key] as bigint;
      const hgt = Math.max(0, share(value, max)) * height;
      g.append(svg("rect", { x: x0 + j * bar, y: top + height - hgt, width: bar - 2, height: hgt, class: cls }, svg("title", {}, `${month} ${key}: ${money(value)}`)));
    });
    g.append(svg("text", { x: x0, y: top + height + 18, class: "tick" }, month));
  });
  const legend = h("ul", { class: "legend" }, ...series.map(([, label, cls]) => h("li", {}, h("span", { class: `swatch ${cls}`, "aria-hidden": "true" }), label)));
  return h("figure", { class: "card" }, g, legend,
    table("The same totals as a table", ["Month", ...series.map(([, l]) => l)], rows.map(([m, s]) => [m, ...series.map(([k]) => money(s[k] as bigint))]), "compact"));
}
