/**
 * HTTP Basic auth against an htpasswd file with bcrypt entries, as distribution's `htpasswd`
 * auth: every `/v2` request without valid credentials gets 401, `WWW-Authenticate: Basic
 * realm="..."` and the `UNAUTHORIZED` envelope.
 * https://distribution.github.io/distribution/about/configuration/#htpasswd
 *
 * The file is read through the adapter's `FileSystem` and checked for changes (identity, size,
 * mtime) at most once per `checkIntervalMs`, so a Kubernetes Secret update, an edit in place or
 * a replacement by rename takes effect without a restart. bcrypt is slow on purpose (tens of
 * milliseconds per check), so credentials that verified once are remembered, by a SHA-256 of
 * user and password, until the file changes; wrong ones pay the full cost every time.
 */
import bcrypt from "bcryptjs";
import { OciError } from "./errors.ts";
import type { FileInfo, FileSystem } from "./fs.ts";
import { defaultHasher, type HasherFactory } from "./hash.ts";
import { type Logger, silentLogger } from "./log.ts";

export interface HtpasswdOptions {
  /** The file system holding the password file (the adapter roots it at the file's folder). */
  fs: FileSystem;
  /** The password file's path in `fs`. */
  path: string;
  /** The realm named in `WWW-Authenticate` (default "simple-oci-registry"). */
  realm?: string;
  /** Look for changes to the file at most this often (default 5 s; 0 = on every request). */
  checkIntervalMs?: number;
}

export interface Htpasswd {
  /** bcrypt hash per user. */
  users: Map<string, string>;
  /** Lines that were skipped, with why (never the hash itself). */
  problems: string[];
}

const BCRYPT = /^\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}$/;
export const DEFAULT_REALM = "simple-oci-registry";
/** A valid bcrypt hash of a random password, compared against when the file has no user. */
const DUMMY_HASH = "$2y$10$viZLNXP/QOQRg.TOvM9onOOgYHVsgu.s98uyKXikE9dEECV4YHRIm";
const MAX_REMEMBERED = 1024;

/** Parses `user:hash` lines; blank lines and `#` comments are skipped; only bcrypt hashes count. */
export function parseHtpasswd(text: string): Htpasswd {
  const users = new Map<string, string>();
  const problems: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const colon = line.indexOf(":");
    if (colon <= 0) return void problems.push(`line ${i + 1}: not "user:hash"`);
    const user = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    if (!BCRYPT.test(hash)) return void problems.push(`line ${i + 1} (${user}): not a bcrypt hash (use htpasswd -B)`);
    if (users.has(user)) return void problems.push(`line ${i + 1} (${user}): user listed twice, the first entry counts`);
    users.set(user, hash);
  });
  return { users, problems };
}

/** User and password from an `Authorization: Basic ...` header, or `undefined`. */
export function basicCredentials(header: string | null): { user: string; password: string } | undefined {
  const m = header && /^Basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header);
  if (!m) return undefined;
  let text: string;
  try {
    const binary = atob(m[1].replace(/-/g, "+").replace(/_/g, "/"));
    text = new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
  } catch {
    return undefined;
  }
  const colon = text.indexOf(":");
  if (colon < 0) return undefined;
  return { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

const stampOf = (info: FileInfo) => `${info.id}/${info.size}/${info.mtimeMs}`;

export class HtpasswdAuth {
  private readonly options: HtpasswdOptions;
  private readonly logger: Logger;
  private readonly createHasher: HasherFactory;
  private readonly now: () => number;
  private readonly challenge: string;
  private users = new Map<string, string>();
  private stamp: string | undefined;
  private checkedAt = -Infinity;
  private checking: Promise<void> | undefined;
  private readonly remembered = new Set<string>();
  /** Refusals by reason, for metrics. */
  onFailure?: (reason: "missing" | "wrong") => void;

  constructor(options: HtpasswdOptions, deps: { logger?: Logger; createHasher?: HasherFactory; now?: () => number } = {}) {
    this.options = options;
    this.logger = deps.logger ?? silentLogger;
    this.createHasher = deps.createHasher ?? defaultHasher;
    this.now = deps.now ?? (() => Date.now());
    const realm = (options.realm ?? DEFAULT_REALM).replace(/["\\]/g, "");
    this.challenge = `Basic realm="${realm}"`;
  }

  /** Users currently known (after the last load). */
  get userCount(): number {
    return this.users.size;
  }

  /**
   * Reads the file if it changed. A missing or unreadable file leaves no valid user (every
   * request is refused) rather than the previous list.
   */
  async load(): Promise<void> {
    const { fs, path } = this.options;
    let info: FileInfo | undefined;
    let text: string | undefined;
    try {
      info = await fs.stat(path);
      if (info && info.kind === "file") {
        if (stampOf(info) === this.stamp) return;
        const bytes = await fs.read(path, 0, Math.min(info.size, 16 << 20));
        text = bytes && new TextDecoder().decode(bytes);
      }
    } catch (e) {
      this.replace(`error:${(e as Error).message}`, new Map());
      this.logger.error("htpasswd unreadable", { file: path, error: (e as Error).message });
      return;
    }
    if (text === undefined || !info) {
      if (this.stamp !== "missing") this.logger.error("htpasswd missing: every request is refused", { file: path });
      this.replace("missing", new Map());
      return;
    }
    const { users, problems } = parseHtpasswd(text);
    for (const problem of problems) this.logger.warn("htpasswd line skipped", { file: path, problem });
    this.replace(stampOf(info), users);
    this.logger.info("htpasswd loaded", { file: path, users: users.size });
  }

  private replace(stamp: string, users: Map<string, string>): void {
    this.stamp = stamp;
    this.users = users;
    this.remembered.clear();
  }

  private async refresh(): Promise<void> {
    const interval = this.options.checkIntervalMs ?? 5000;
    if (this.now() - this.checkedAt < interval && this.stamp !== undefined) return;
    this.checking ??= this.load().finally(() => {
      this.checkedAt = this.now();
      this.checking = undefined;
    });
    await this.checking;
  }

  private key(user: string, password: string): string {
    const h = this.createHasher("sha256")!;
    const enc = new TextEncoder();
    h.update(enc.encode(user));
    h.update(new Uint8Array([0]));
    h.update(enc.encode(password));
    return h.digest();
  }

  /** Whether the credentials match a bcrypt entry. */
  async verify(user: string, password: string): Promise<boolean> {
    await this.refresh();
    const key = this.key(user, password);
    if (this.remembered.has(key)) return true;
    const hash = this.users.get(user);
    // Unknown users cost a bcrypt comparison too (against another user's hash, so at the same
    // cost), so timing does not tell who exists.
    const ok = await bcrypt.compare(password, hash ?? this.users.values().next().value ?? DUMMY_HASH).catch(() => false);
    if (!ok || hash === undefined) return false;
    if (this.remembered.size >= MAX_REMEMBERED) this.remembered.clear();
    this.remembered.add(key);
    return true;
  }

  /** `undefined` when the request may go on; otherwise the 401 to answer. */
  async check(authorization: string | null | undefined, path: string): Promise<OciError | undefined> {
    const credentials = basicCredentials(authorization ?? null);
    if (credentials && (await this.verify(credentials.user, credentials.password))) return undefined;
    const reason = credentials ? "wrong" : "missing";
    this.onFailure?.(reason);
    if (credentials) this.logger.warn("authentication failed", { user: credentials.user, path });
    return new OciError("UNAUTHORIZED", null, { "WWW-Authenticate": this.challenge });
  }
}
