/**
 * The registry reaches storage only through this interface. Adapters implement it on real
 * disks (Node, Deno); `memory-fs.ts` implements it in memory for tests.
 *
 * Paths are relative, `/`-separated and never start with `/` or contain `..`: every
 * implementation is rooted at a folder (`--dir`, `--cache-dir`) and resolves paths under it.
 * "Not there" is `undefined`, never an exception; other failures (permissions, I/O) throw.
 *
 * Symlinks (every disk adapter must do the same): a path is followed only when its real path,
 * with every symlink resolved, is inside the root or inside one of the extra allowed roots the
 * adapter was given (`--allow-symlink-root`). Otherwise `list`, `stat`, `read` and `stream`
 * answer `undefined`, as if nothing were there, and the adapter logs the path once. Checking
 * may be cached per path and file identity (a retargeted link resolves to another identity).
 * The Node version is adapters/node/confine.ts.
 */

export interface FileInfo {
  kind: "file" | "directory" | "other";
  size: number;
  /** Modification time in milliseconds since the epoch. */
  mtimeMs: number;
  /** Identity of the underlying file (for example `dev:ino`): changes when a file is replaced by rename. */
  id: string;
}

export interface StreamOptions {
  /**
   * When given, the implementation checks after opening that the file is still this one
   * (same id, size and mtime) and answers `undefined` if not, so that a replaced file is
   * never served under an old index.
   */
  expect?: FileInfo;
}

export interface FileSystem {
  /** Names of the entries of a folder (no `.` or `..`), in no particular order. */
  list(path: string): Promise<string[] | undefined>;
  stat(path: string): Promise<FileInfo | undefined>;
  /**
   * Optional: `stat` answered synchronously, for the lookup's cached path (a manifest request
   * whose answer is already known costs no promise). `null` when it cannot answer at once
   * (an error to report, a check still to make): the caller then awaits `stat`, which answers
   * or throws as usual. Never throws.
   */
  statNow?(path: string): FileInfo | undefined | null;
  /**
   * Up to `length` bytes from `offset`. Shorter only at the end of the file.
   * `undefined` when the file does not exist.
   */
  read(path: string, offset: number, length: number): Promise<Uint8Array | undefined>;
  /**
   * Bytes `start` (inclusive) to `end` (exclusive) as a stream. The stream errors if the file
   * ends before `end` (truncated in place), and releases the file when it ends, errors or is
   * cancelled.
   */
  stream(path: string, start: number, end: number, options?: StreamOptions): Promise<ReadableStream<Uint8Array> | undefined>;
}

/** A FileSystem the registry may also write to: the blob cache for gzip-compressed archives. */
export interface WritableFileSystem extends FileSystem {
  /**
   * Writes the stream to `path` atomically (a temporary file renamed into place, creating parent
   * folders). If the stream errors, nothing is left at `path` and the error is rethrown.
   */
  write(path: string, data: ReadableStream<Uint8Array>): Promise<void>;
  /** Removes a file; a missing file is not an error. */
  remove(path: string): Promise<void>;
}

export function joinPath(...parts: string[]): string {
  return parts.filter((p) => p !== "" && p !== ".").join("/");
}

export function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i);
}

export function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}
