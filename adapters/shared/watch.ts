/**
 * Polls a few files (TLS certificate and key) and hands their new contents over when any of
 * them changed: identity, size or mtime, so an edit in place, a replacement by rename and a
 * Kubernetes Secret update (a symlink swapped to a new folder) are all seen. Polling, not
 * inotify: watches on a Secret's files follow the old inode after the swap. Runtime-free: the
 * adapter passes its own `FileSystem` rooted at each file's folder.
 */
import type { FileInfo, FileSystem } from "../../core/fs.ts";

export interface WatchedFile {
  fs: FileSystem;
  path: string;
}

const stampOf = (info: FileInfo | undefined) => (info ? `${info.id}/${info.size}/${info.mtimeMs}` : "missing");

/** A file's whole contents, or an error naming it. */
export async function readWhole(file: WatchedFile, limit = 1 << 20): Promise<Uint8Array> {
  const info = await file.fs.stat(file.path);
  if (!info || info.kind !== "file") throw new Error(`${file.path}: no such file`);
  if (info.size > limit) throw new Error(`${file.path}: larger than ${limit} bytes`);
  const bytes = await file.fs.read(file.path, 0, info.size);
  if (!bytes) throw new Error(`${file.path}: vanished while being read`);
  return bytes;
}

/** `path` split into its folder and name ("/etc/tls/tls.crt" -> ["/etc/tls", "tls.crt"]). */
export function splitPath(path: string): [string, string] {
  const i = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  if (i < 0) return [".", path];
  return [i === 0 ? path.slice(0, 1) : path.slice(0, i), path.slice(i + 1)];
}

export interface FileWatcher {
  /** Checks now (what the timer does); resolves once any reload it started is over. */
  check(): Promise<void>;
  stop(): void;
}

/**
 * Calls `onChange` with every file's contents when one of them changed since the last call
 * (not at start: the caller read them already). Errors go to `onError`; the next change is
 * tried again.
 */
export function watchFiles(
  files: WatchedFile[],
  intervalMs: number,
  onChange: (contents: Uint8Array[]) => void | Promise<void>,
  onError: (error: Error) => void,
): FileWatcher {
  let stamps: string[] | undefined;
  let running: Promise<void> | undefined;
  const stampsNow = () => Promise.all(files.map((f) => f.fs.stat(f.path).then(stampOf, () => "error")));
  const check = () =>
    (running ??= (async () => {
      try {
        const now = await stampsNow();
        if (stamps === undefined) {
          stamps = now;
          return;
        }
        if (now.every((s, i) => s === stamps![i])) return;
        stamps = now;
        await onChange(await Promise.all(files.map((f) => readWhole(f))));
      } catch (e) {
        onError(e as Error);
      } finally {
        running = undefined;
      }
    })());
  void check();
  const timer = intervalMs > 0 ? setInterval(() => void check(), intervalMs) : undefined;
  (timer as { unref?: () => void } | undefined)?.unref?.();
  return { check, stop: () => clearInterval(timer) };
}
