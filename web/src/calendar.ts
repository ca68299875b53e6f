// The availability calendar: per file type and period, when Microsoft's invoice is expected, whether it is in,
// our files of it, and a late flag (GET …/calendar).

import { call, problemText, type CalendarEntry } from "./api";
import { TYPES, tenantPath } from "./state";
import { h, table } from "./ui";

export async function calendarPage(main: HTMLElement): Promise<void> {
  main.append(h("h1", {}, "Calendar"), h("p", {}, "When Microsoft's invoices are expected, and whether they are in. Late is a prompt to look, not an error."));
  try {
    const cal = await call<{ today: string; items: CalendarEntry[]; billingAnniversaryDay?: number | null }>("GET", `${tenantPath()}/calendar?months=6`);
    for (const [type, label] of TYPES) {
      const items = cal.items.filter((e) => e.fileType === type);
      if (!items.length) {
        main.append(h("h2", {}, label), h("p", { class: "empty" }, "No calendar for this type (License and Usage need the tenant's billing anniversary day)."));
        continue;
      }
      main.append(h("h2", {}, label), table(`${label}: expected availability`, ["Billing period", "Expected by", "Microsoft's invoice", "Our files", "Late"],
        items.map((e) => [`${e.periodStart} – ${e.periodEnd}`, e.expectedDate,
          e.invoiceAppeared ? `In (${e.invoiceIds.join(", ")})` : "Not yet",
          e.files.length ? e.files.map((f) => `${f.invoiceId}: ${f.status}`).join(", ") : "None",
          e.late ? h("span", { class: "badge late" }, "Late") : "No"])));
    }
  } catch (err) { main.append(h("p", { class: "error", role: "alert" }, problemText(err))); }
}
