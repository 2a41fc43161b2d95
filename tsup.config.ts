import { defineConfig } from "tsup";

export default defineConfig([
  {
    entry: { "core/index": "core/index.ts", "node/index": "adapters/node/index.ts", "node/cli": "adapters/node/cli.ts" },
    format: ["esm"],
    target: "node20",
    platform: "node",
    dts: { entry: { "core/index": "core/index.ts", "node/index": "adapters/node/index.ts" } },
    clean: true,
    sourcemap: true,
    splitting: true,
  },
]);
