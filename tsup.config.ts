import { defineConfig } from "tsup";

export default defineConfig([
  {
    entry: { "core/index": "core/index.ts", "node/index": "adapters/node/index.ts", "node/cli": "adapters/node/cli.ts" },
    format: ["esm"],
    target: "node20",
    platform: "node",
    dts: { entry: { "core/index": "core/index.ts", "node/index": "adapters/node/index.ts" } },
    // dist/deno/ is the next build's, which cleans it itself.
    clean: ["!deno/**"],
    sourcemap: true,
    splitting: true,
  },
  {
    // One self-contained file for Deno (`deno run dist/deno/simple-oci-registry.js`): every npm
    // dependency inlined, nothing imported but Deno's built-in node:* modules.
    entry: { "simple-oci-registry": "adapters/deno/main.ts" },
    outDir: "dist/deno",
    format: ["esm"],
    target: "esnext",
    platform: "neutral",
    noExternal: [/./],
    removeNodeProtocol: false,
    clean: true,
    splitting: false,
    sourcemap: false,
    esbuildOptions(options) {
      options.mainFields = ["module", "main"];
      options.conditions = ["deno", "import", "default"];
      options.external = ["node:*"];
      // `require("events")` (streamx) has no resolution on a neutral platform: Deno's node:events.
      options.alias = { events: "./adapters/deno/node-events.ts" };
    },
  },
]);
