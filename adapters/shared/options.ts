/**
 * Command-line flags and environment variables, shared by the Node and Deno adapters so both
 * accept exactly the same options. Runtime-free: adapters pass argv and the environment in.
 */
import { LIMIT_FLAGS, type LimitOptions, limitOptions } from "./limit-options.ts";

export const VERSION = "0.1.0";

export type LogLevel = "debug" | "info" | "warn" | "error";
export const LOG_LEVELS: LogLevel[] = ["debug", "info", "warn", "error"];

/** Limit and symlink flags (`limits`, `allowSymlinkRoots`) come from limit-options.ts. */
export interface ServerOptions extends LimitOptions {
  dir: string;
  port: number;
  host: string;
  /** `undefined`: the adapter picks a folder under the OS temp dir. */
  cacheDir?: string;
  rescanIntervalMs: number;
  logLevel: LogLevel;
  shutdownGraceMs: number;
  /** PEM certificate chain and key for HTTPS (`--tls-cert`, `--tls-key`); both or neither. */
  tlsCert?: string;
  tlsKey?: string;
  /** htpasswd file (bcrypt entries) for Basic auth on /v2 (`--htpasswd`). */
  htpasswd?: string;
  /** Realm in `WWW-Authenticate` (`--auth-realm`; default "simple-oci-registry"). */
  authRealm?: string;
  /** Port for /metrics, /healthz and /readyz (`--metrics-port`); `undefined`: on the main port. */
  metricsPort?: number;
  /** Address for `--metrics-port` (`--metrics-host`); `undefined`: the same as `host`. */
  metricsHost?: string;
  /** Look under `<dir>/<registry>/` first for containerd's `?ns=<registry>` (`--ns-dirs`). */
  nsDirs?: boolean;
  /** How often the TLS files and the htpasswd file are checked for changes (`--watch-interval`; default 5 s). */
  watchIntervalMs?: number;
}

interface FlagSpec {
  env: string;
  help: string;
  default?: string;
  boolean?: boolean;
}

/** Every flag, its environment variable and its help line. */
export const FLAGS: Record<string, FlagSpec> = {
  dir: { env: "SIMPLE_OCI_REGISTRY_DIR", help: "folder of .oci archives to serve (required)" },
  port: { env: "SIMPLE_OCI_REGISTRY_PORT", default: "5000", help: "TCP port to listen on" },
  host: { env: "SIMPLE_OCI_REGISTRY_HOST", default: "0.0.0.0", help: "address to listen on" },
  "cache-dir": { env: "SIMPLE_OCI_REGISTRY_CACHE_DIR", help: "where gzip-compressed archives are unpacked (default: <tmp>/simple-oci-registry-cache)" },
  "rescan-interval": { env: "SIMPLE_OCI_REGISTRY_RESCAN_INTERVAL", default: "10m", help: "revalidate every cached listing and archive this often (e.g. 30s, 10m, 1h; 0 = never)" },
  "log-level": { env: "SIMPLE_OCI_REGISTRY_LOG_LEVEL", default: "info", help: "debug, info, warn or error" },
  "shutdown-grace": { env: "SIMPLE_OCI_REGISTRY_SHUTDOWN_GRACE", default: "30s", help: "on SIGTERM/SIGINT, how long in-flight downloads may take to finish" },
  "tls-cert": { env: "SIMPLE_OCI_REGISTRY_TLS_CERT", help: "PEM certificate (chain) to serve HTTPS with; needs --tls-key; reloaded when it changes" },
  "tls-key": { env: "SIMPLE_OCI_REGISTRY_TLS_KEY", help: "PEM private key for --tls-cert" },
  htpasswd: { env: "SIMPLE_OCI_REGISTRY_HTPASSWD", help: "require Basic auth on /v2 from this htpasswd file (bcrypt entries, htpasswd -B); re-read when it changes" },
  "auth-realm": { env: "SIMPLE_OCI_REGISTRY_AUTH_REALM", default: "simple-oci-registry", help: "realm named in WWW-Authenticate with --htpasswd" },
  "metrics-port": { env: "SIMPLE_OCI_REGISTRY_METRICS_PORT", help: "serve /metrics, /healthz and /readyz on this port (plain HTTP) instead of the main one" },
  "metrics-host": { env: "SIMPLE_OCI_REGISTRY_METRICS_HOST", help: "address for --metrics-port (default: --host), e.g. 0.0.0.0 for Prometheus while the registry listens on 127.0.0.1" },
  "ns-dirs": { env: "SIMPLE_OCI_REGISTRY_NS_DIRS", boolean: true, help: "for containerd's ?ns=<registry> (mirror use), look under DIR/<registry>/ first" },
  "watch-interval": { env: "SIMPLE_OCI_REGISTRY_WATCH_INTERVAL", default: "5s", help: "how often --tls-cert, --tls-key and --htpasswd are checked for changes" },
  ...LIMIT_FLAGS,
  help: { env: "", boolean: true, help: "show this help" },
  version: { env: "", boolean: true, help: "show the version" },
};

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** `500ms`, `30s`, `10m`, `1h`, or a bare number of seconds. */
export function parseDuration(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!m) throw new UsageError(`--${flag}: "${value}" is not a duration (use e.g. 30s, 10m, 1h)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? "s"]!;
  return Math.round(Number(m[1]) * unit);
}

export type ParsedArgs = { kind: "help"; text: string } | { kind: "version"; text: string } | { kind: "run"; options: ServerOptions };

export function helpText(command = "simple-oci-registry"): string {
  const lines = [`Usage: ${command} --dir DIR [options]`, `       ${command} check --dir DIR [--json]    (what DIR would serve, and its problems; see check --help)`, "", "Serves the images in DIR's .oci archives over the OCI Distribution (pull) API.", "", "Options:"];
  for (const [name, spec] of Object.entries(FLAGS)) {
    const flag = spec.boolean ? `--${name}` : `--${name} VALUE`;
    const extra = [spec.default !== undefined ? `default ${spec.default}` : "", spec.env ? `env ${spec.env}` : ""].filter(Boolean).join("; ");
    lines.push(`  ${flag.padEnd(26)} ${spec.help}${extra ? ` (${extra})` : ""}`);
  }
  return lines.join("\n");
}

/**
 * Parses argv (without the runtime and script) and the environment. Flags win over the
 * environment, which wins over defaults. Throws UsageError with a one-line reason.
 */
export function parseArgs(argv: string[], env: Record<string, string | undefined>): ParsedArgs {
  const values: Record<string, string> = {};
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("--")) throw new UsageError(`unexpected argument "${arg}" (see --help)`);
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const spec = FLAGS[name];
    if (!spec) throw new UsageError(`unknown option --${name} (see --help)`);
    if (spec.boolean) {
      flags.add(name);
      continue;
    }
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    values[name] = value;
  }
  if (flags.has("help")) return { kind: "help", text: helpText() };
  if (flags.has("version")) return { kind: "version", text: VERSION };
  const get = (name: string): string | undefined => {
    const spec = FLAGS[name];
    const fromEnv = spec.env ? env[spec.env] : undefined;
    return values[name] ?? (fromEnv !== undefined && fromEnv !== "" ? fromEnv : spec.default);
  };
  const dir = get("dir");
  if (!dir) throw new UsageError("--dir is required: the folder of .oci archives to serve");
  const portText = get("port")!;
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) throw new UsageError(`--port: "${portText}" is not a port number`);
  const logLevel = get("log-level") as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new UsageError(`--log-level: "${logLevel}" is not one of ${LOG_LEVELS.join(", ")}`);
  const tlsCert = get("tls-cert");
  const tlsKey = get("tls-key");
  if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new UsageError("--tls-cert and --tls-key go together: give both or neither");
  const metricsPortText = get("metrics-port");
  const metricsPort = metricsPortText === undefined ? undefined : Number(metricsPortText);
  if (metricsPortText !== undefined && (!/^\d+$/.test(metricsPortText) || metricsPort! > 65535)) throw new UsageError(`--metrics-port: "${metricsPortText}" is not a port number`);
  if (metricsPort !== undefined && metricsPort !== 0 && metricsPort === port) throw new UsageError("--metrics-port must differ from --port (leave it out to serve /metrics on the main port)");
  // Boolean flags may also come from the environment: 1, true, yes or on.
  const bool = (name: string) => flags.has(name) || /^(1|true|yes|on)$/i.test(env[FLAGS[name].env] ?? "");
  return {
    kind: "run",
    options: {
      dir,
      port,
      host: get("host")!,
      cacheDir: get("cache-dir"),
      rescanIntervalMs: parseDuration(get("rescan-interval")!, "rescan-interval"),
      logLevel,
      shutdownGraceMs: parseDuration(get("shutdown-grace")!, "shutdown-grace"),
      ...limitOptions(get, (message) => new UsageError(message)),
      tlsCert,
      tlsKey,
      htpasswd: get("htpasswd"),
      authRealm: get("auth-realm")!,
      metricsPort,
      metricsHost: get("metrics-host"),
      nsDirs: bool("ns-dirs"),
      watchIntervalMs: parseDuration(get("watch-interval")!, "watch-interval"),
    },
  };
}
