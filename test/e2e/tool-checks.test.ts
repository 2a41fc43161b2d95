// The gate every end-to-end suite goes through: in CI a missing tool is an error naming the apt
// package; elsewhere the suite is skipped with the reason in its title.
import { afterEach, describe, expect, test } from "vitest";
import { hasTool, requireTool } from "../helpers/tools.ts";

describe("requireTool", () => {
  const saved = process.env.CI;
  afterEach(() => {
    if (saved === undefined) delete process.env.CI;
    else process.env.CI = saved;
  });

  test("finds programs on PATH", () => {
    expect(hasTool("node") || hasTool(process.execPath.split("/").pop()!)).toBe(true);
    expect(hasTool("no-such-program-for-sure")).toBe(false);
  });

  test("outside CI a missing tool means skip, with the apt package in the reason", () => {
    process.env.CI = "false";
    const check = requireTool("no-such-program-for-sure", "docker-registry");
    expect(check.skip).toBe(true);
    expect(check.missing).toContain("no-such-program-for-sure");
    expect(check.reason).toMatch(/apt-get install -y --no-install-recommends .*no-such-program-for-sure/);
  });

  test("in CI a missing tool throws", () => {
    process.env.CI = "true";
    expect(() => requireTool("no-such-program-for-sure")).toThrow(/CI=true .*no-such-program-for-sure/);
  });
});
