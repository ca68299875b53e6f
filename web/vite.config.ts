import { defineConfig } from "vite";

// Served by the function app under /api/app/ (functions/web_app.py); hashed names under assets/ are immutable.
export default defineConfig({
  base: "/api/app/",
  build: { outDir: "dist", assetsDir: "assets", target: "es2022", sourcemap: false, modulePreload: { polyfill: false } },
});
