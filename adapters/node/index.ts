export { nodeFileSystem, type NodeFileSystemOptions } from "./fs.ts";
export { nodeHasher } from "./hash.ts";
export { serve, defaultCacheDir, type RunningServer } from "./server.ts";
