// `deno check` of the Deno adapter (and of the Deno side of the tests) with Deno's own types,
// which `tsc` cannot see: CI runs it as part of npm test.
import { expect, it } from "vitest";
import { run } from "../helpers/exec.ts";
import { REPO_ROOT } from "../helpers/server.ts";
import { DENO, describeWithDeno, OFFLINE_ENV } from "./deno.ts";

describeWithDeno("deno check", () => {
  it("type-checks adapters/deno and test/deno/in-deno", { timeout: 120_000 }, async () => {
    const result = await run(DENO, ["check", "adapters/deno/main.ts", "test/deno/in-deno/fs-server.ts", "test/deno/in-deno/chunk-reuse.ts"], { cwd: REPO_ROOT, env: { ...process.env, ...OFFLINE_ENV }, timeout: 110_000 });
    expect(result.stderr).not.toMatch(/error/i);
  });
});
