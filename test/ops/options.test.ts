/** The flags of issue 6 in the shared option parser (Node and Deno read the same ones). */
import { describe, expect, it } from "vitest";
import { helpText, parseArgs, type ServerOptions } from "../../adapters/shared/options.ts";

const run = (argv: string[], env: Record<string, string> = {}): ServerOptions => {
  const parsed = parseArgs(["--dir", "/srv/images", ...argv], env);
  if (parsed.kind !== "run") throw new Error(parsed.kind);
  return parsed.options;
};

describe("issue 6 options", () => {
  it("defaults: plain HTTP, no auth, endpoints on the main port, no ns folders, 5 s watch", () => {
    expect(run([])).toMatchObject({ tlsCert: undefined, tlsKey: undefined, htpasswd: undefined, authRealm: "simple-oci-registry", metricsPort: undefined, nsDirs: false, watchIntervalMs: 5000 });
  });

  it("reads every flag", () => {
    const o = run(["--tls-cert", "/tls/tls.crt", "--tls-key=/tls/tls.key", "--htpasswd", "/auth/htpasswd", "--auth-realm", "Images", "--metrics-port", "9100", "--metrics-host", "0.0.0.0", "--ns-dirs", "--watch-interval", "1s"]);
    expect(o).toMatchObject({ tlsCert: "/tls/tls.crt", tlsKey: "/tls/tls.key", htpasswd: "/auth/htpasswd", authRealm: "Images", metricsPort: 9100, metricsHost: "0.0.0.0", nsDirs: true, watchIntervalMs: 1000 });
  });

  it("reads every flag from the environment, booleans included", () => {
    const o = run([], {
      SIMPLE_OCI_REGISTRY_TLS_CERT: "/c",
      SIMPLE_OCI_REGISTRY_TLS_KEY: "/k",
      SIMPLE_OCI_REGISTRY_HTPASSWD: "/h",
      SIMPLE_OCI_REGISTRY_AUTH_REALM: "R",
      SIMPLE_OCI_REGISTRY_METRICS_PORT: "9100",
      SIMPLE_OCI_REGISTRY_NS_DIRS: "true",
      SIMPLE_OCI_REGISTRY_WATCH_INTERVAL: "10s",
    });
    expect(o).toMatchObject({ tlsCert: "/c", tlsKey: "/k", htpasswd: "/h", authRealm: "R", metricsPort: 9100, nsDirs: true, watchIntervalMs: 10_000 });
    expect(run([], { SIMPLE_OCI_REGISTRY_NS_DIRS: "0" }).nsDirs).toBe(false);
  });

  it.each([
    [["--tls-cert", "/c"], /--tls-cert and --tls-key go together/],
    [["--tls-key", "/k"], /--tls-cert and --tls-key go together/],
    [["--metrics-port", "metrics"], /--metrics-port: "metrics" is not a port number/],
    [["--metrics-port", "5000"], /--metrics-port must differ from --port/],
    [["--watch-interval", "often"], /not a duration/],
  ])("%j is a usage error", (argv, message) => {
    expect(() => run(argv as string[])).toThrow(message as RegExp);
  });

  it("--help lists the new flags with their variables", () => {
    const text = helpText();
    for (const flag of ["--tls-cert", "--tls-key", "--htpasswd", "--auth-realm", "--metrics-port", "--metrics-host", "--ns-dirs", "--watch-interval"]) expect(text).toContain(flag);
    expect(text).toContain("SIMPLE_OCI_REGISTRY_NS_DIRS");
  });
});
