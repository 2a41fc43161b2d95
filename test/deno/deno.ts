// Finding the Deno binary (the npm devDependency `deno`, else one on PATH) for the suites that run
// the Deno adapter. In CI (CI=true) a missing binary fails the suite; elsewhere it is skipped
// with the reason, as the real-tool suites do.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe } from "vitest";
import { inCI } from "../helpers/tools.ts";

const LOCAL = join(resolve(dirname(fileURLToPath(import.meta.url)), "../.."), "node_modules/.bin/deno");
export const DENO = existsSync(LOCAL) ? LOCAL : "deno";

/**
 * Environment for every Deno subprocess in the tests: an npm registry that cannot answer, so a
 * run that tried to download anything would fail instead of quietly using the network.
 */
export const OFFLINE_ENV: Record<string, string> = { NPM_CONFIG_REGISTRY: "http://127.0.0.1:9/", DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" };

let missing: string | undefined | null = null;

/** Why Deno cannot run here, or undefined when it can. */
export function denoMissing(): string | undefined {
  if (missing === null) {
    const r = spawnSync(DENO, ["--version"], { encoding: "utf8" });
    missing = r.status === 0 ? undefined : `deno not runnable (${DENO}: ${r.error?.message ?? r.stderr.trim()}); run npm ci to install the deno devDependency`;
  }
  return missing;
}

/** `describe` for a suite that needs Deno: skipped with the reason when it is missing, failed in CI. */
export function describeWithDeno(title: string, body: () => void): void {
  const reason = denoMissing();
  if (reason && inCI()) throw new Error(`CI=true and Deno is not available: ${reason}`);
  describe.skipIf(!!reason)(reason ? `${title} [skipped: ${reason}]` : title, body);
}
