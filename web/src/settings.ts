// Regional settings: the CSV format this user wants its downloads in, kept in this browser (localStorage) and
// sent as `csvFormat` with every generate request (the API's per-request regional format).

import { csvFormat, saveCsvFormat } from "./state";
import { announce, field, h, select } from "./ui";

export function settingsPage(main: HTMLElement): void {
  const current = csvFormat();
  const delimiter = select("delimiter", [[",", "Comma ( , )"], [";", "Semicolon ( ; )"], ["\t", "Tab"], ["|", "Pipe ( | )"]], current?.delimiter ?? ",");
  const decimal = select("decimalSeparator", [[".", "Point (1234.56)"], [",", "Comma (1234,56)"]], current?.decimalSeparator ?? ".");
  const dates = select("dateFormat", [["iso", "ISO (2026-10-31)"], ["us", "US (10/31/2026)"], ["eu", "European (31/10/2026)"]], current?.dateFormat ?? "iso");
  const status = h("p", { role: "status" }, current ? "Your downloads use the format below." : "No preference saved: files use the tenant's format.");
  const form = h("form", { class: "card", onsubmit: (e: Event) => {
    e.preventDefault();
    if (delimiter.value === decimal.value) { status.textContent = "The delimiter and the decimal separator must differ."; return; }
    saveCsvFormat({ delimiter: delimiter.value, decimalSeparator: decimal.value, dateFormat: dates.value });
    status.textContent = "Saved. New files you generate use this format."; announce(status.textContent);
  } },
    field("Column delimiter", delimiter), field("Decimal separator", decimal), field("Date format", dates),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Save"),
      h("button", { type: "button", class: "secondary", onclick: () => { saveCsvFormat(null); status.textContent = "Preference cleared."; } }, "Use the tenant's format")),
    status);
  main.append(h("h1", {}, "Regional settings"),
    h("p", {}, "The CSV format for files you generate. Stored in this browser only."), form);
}
