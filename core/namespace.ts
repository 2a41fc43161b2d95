/**
 * `--ns-dirs`: when containerd uses this registry as a mirror it adds `?ns=<upstream host>` to
 * every request (`ns=docker.io`, `ns=registry.example%3A5000`). With `--ns-dirs` a request that
 * carries one looks under `<dir>/<host>/` first, then as usual, so one folder can mirror several
 * registries. The value names a folder, so only a host name or IPv4 address with an optional
 * port is taken; anything else (`..`, slashes, IPv6 brackets) is ignored, as the parameter is
 * without `--ns-dirs`.
 */

const LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
const HOST = new RegExp(`^${LABEL}(?:\\.${LABEL})*(?::(\\d{1,5}))?$`);

/** The folder for an `ns` value (lowercased), or `undefined` when it is not `host[:port]`. */
export function namespaceFolder(ns: string | null | undefined): string | undefined {
  if (!ns || ns.length > 253 + 6) return undefined;
  const value = ns.toLowerCase();
  const m = HOST.exec(value);
  if (!m) return undefined;
  if (m[1] !== undefined && (Number(m[1]) < 1 || Number(m[1]) > 65535)) return undefined;
  return value;
}

/** The `ns` folder a request asks for (its query parameter, decoded), if any. */
export function requestNamespace(request: Request): string | undefined {
  return namespaceFolder(new URL(request.url).searchParams.get("ns"));
}
