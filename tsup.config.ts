import { builtinModules } from "node:module";
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
    // An ES module has no `require`; inlined CommonJS dependencies (streamx's `require("events")`)
    // get Node's, which Deno provides for its built-in modules.
    banner: { js: 'import { createRequire as __sorCreateRequire } from "node:module";\nconst require = __sorCreateRequire(import.meta.url);' },
    esbuildOptions(options) {
      options.mainFields = ["module", "main"];
      options.conditions = ["deno", "import", "default"];
    },
    esbuildPlugins: [
      {
        // Built-ins, with or without `node:`, stay imports of Deno's `node:` modules.
        name: "deno-node-builtins",
        setup(build) {
          const names = new Set(builtinModules.filter((m) => !m.startsWith("_")));
          build.onResolve({ filter: /^[a-z_:/]+$/ }, (args) => {
            const name = args.path.replace(/^node:/, "");
            return names.has(name) ? { path: `node:${name}`, external: true } : undefined;
          });
        },
      },
    ],
  },
]);
