export { createRegistry, DEFAULT_RESCAN_INTERVAL_MS, type Registry, type RegistryOptions } from "./registry.ts";
export type { FileInfo, FileSystem, StreamOptions, WritableFileSystem } from "./fs.ts";
export { MemoryFileSystem } from "./memory-fs.ts";
export { defaultHasher, type Hasher, type HasherFactory } from "./hash.ts";
export { type Logger, type LogFields, silentLogger } from "./log.ts";
export { errorCodes, type ErrorCode, OciError } from "./errors.ts";
