// External programs the end-to-end suites need. In CI (CI=true) a missing program is an error
// that names the apt package to install; on a developer's machine the suite is skipped and its
// title says why.
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { describe } from "vitest";

/** Debian package that provides each program (`root` is a pseudo-tool: the suite needs uid 0). */
export const APT_PACKAGES: Readonly<Record<string, string>> = {
  skopeo: "skopeo",
  containerd: "containerd",
  ctr: "containerd",
  runc: "runc",
  umoci: "umoci",
  buildah: "buildah",
  podman: "podman",
  "docker-registry": "docker-registry",
  nginx: "nginx",
  wrk: "wrk",
  gzip: "gzip",
  tar: "tar",
  openssl: "openssl",
};

export const inCI = () => process.env.CI === "true";

const found = new Map<string, boolean>();

/** True when `name` is an executable on PATH (or, for `root`, when running as uid 0). */
export function hasTool(name: string): boolean {
  if (name === "root") return process.getuid?.() === 0;
  let ok = found.get(name);
  if (ok === undefined) {
    ok = (process.env.PATH ?? "")
      .split(delimiter)
      .concat(["/usr/sbin", "/sbin"])
      .some((dir) => {
        if (!dir) return false;
        try {
          accessSync(join(dir, name), constants.X_OK);
          return true;
        } catch {
          return false;
        }
      });
    found.set(name, ok);
  }
  return ok;
}

export function missingTools(names: readonly string[]): string[] {
  return names.filter((name) => !hasTool(name));
}

export interface ToolCheck {
  /** True when the suite must be skipped (never true in CI: there it throws instead). */
  skip: boolean;
  missing: string[];
  reason: string;
}

function describeMissing(missing: readonly string[]): string {
  const parts = missing.map((name) => (name === "root" ? "root (run as uid 0)" : name));
  const packages = [...new Set(missing.filter((n) => n !== "root").map((n) => APT_PACKAGES[n] ?? n))];
  const install = packages.length ? `; install with: apt-get install -y --no-install-recommends ${packages.join(" ")}` : "";
  return `missing ${parts.join(", ")}${install}`;
}

/**
 * Checks that every named program is installed. In CI a missing one throws (the test file
 * fails); elsewhere the result says to skip, with the reason.
 */
export function requireTool(...names: string[]): ToolCheck {
  const missing = missingTools(names);
  if (missing.length === 0) return { skip: false, missing, reason: "" };
  const reason = describeMissing(missing);
  if (inCI()) throw new Error(`CI=true and a required tool is not available: ${reason}`);
  return { skip: true, missing, reason };
}

/** `describe` that runs only when the tools are there (fails in CI when they are not). */
export function describeWithTools(tools: readonly string[], title: string, body: () => void): void {
  const check = requireTool(...tools);
  describe.skipIf(check.skip)(check.skip ? `${title} [skipped: ${check.reason}]` : title, body);
}
