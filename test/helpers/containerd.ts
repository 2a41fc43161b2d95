// A private containerd for a test file: its own config, root, state and sockets under a temp
// folder, the `native` snapshotter (overlayfs may not mount here), no CRI plugin. Needs root.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, type RunOptions, type RunResult } from "./exec.ts";
import { sleep } from "./server.ts";

export const CONTAINERD_TOOLS = ["root", "containerd", "ctr", "runc"] as const;

export interface CtrOptions extends Pick<RunOptions, "timeout" | "input"> {
  /** containerd namespace (default "default"). */
  namespace?: string;
}

export interface CtrImage {
  ref: string;
  mediaType: string;
  digest: string;
  /** "complete (2/2)", "incomplete (1/2)", ... */
  status: string;
  /** Whether the image is unpacked into the native snapshotter. */
  unpacked: boolean;
}

export interface Containerd {
  /** The grpc socket (what `ctr --address` takes). */
  address: string;
  /** The temp folder holding config, root, state and sockets. */
  dir: string;
  pid: number;
  /** "1.6.20~ds1", ... */
  version: string;
  /** Runs `ctr --address ADDRESS --namespace NS ARGS` with the native snapshotter as default. */
  ctr(args: string[], options?: CtrOptions): Promise<RunResult>;
  /** `ctr images pull --plain-http REF` (which also unpacks), plus extra flags. */
  pull(ref: string, flags?: string[], options?: CtrOptions): Promise<RunResult>;
  /** `ctr images check`, parsed: every image with its digest, status and unpack state. */
  images(options?: CtrOptions): Promise<CtrImage[]>;
  /** `ctr content ls -q`: digests of all content blobs. */
  content(options?: CtrOptions): Promise<string[]>;
  /** `ctr snapshots ls` keys of the native snapshotter. */
  snapshots(options?: CtrOptions): Promise<string[]>;
  logs(): string;
  /** Kills containerd by PID and removes the folder. */
  stop(): Promise<void>;
}

/** `containerd --version`, e.g. "1.6.20~ds1". */
export async function containerdVersion(): Promise<string> {
  const { stdout } = await run("containerd", ["--version"]);
  // "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
  const match = /\s(v?\d+\.\d+\.\d+\S*)/.exec(stdout);
  if (!match) throw new Error(`cannot read containerd version from: ${stdout}`);
  return match[1]!.replace(/^v/, "");
}

/** A config.toml that keeps everything under `dir`; format 2 for containerd 1.x, 3 for 2.x. */
export function containerdConfig(dir: string, majorVersion: number): string {
  const disabled =
    majorVersion >= 2
      ? [
          "io.containerd.grpc.v1.cri",
          "io.containerd.cri.v1.images",
          "io.containerd.cri.v1.runtime",
          "io.containerd.podsandbox.controller.v1.podsandbox",
          "io.containerd.sandbox.controller.v1.shim",
          "io.containerd.snapshotter.v1.aufs",
          "io.containerd.snapshotter.v1.btrfs",
          "io.containerd.snapshotter.v1.devmapper",
          "io.containerd.snapshotter.v1.zfs",
          "io.containerd.snapshotter.v1.blockfile",
          "io.containerd.snapshotter.v1.erofs",
          "io.containerd.tracing.processor.v1.otlp",
          "io.containerd.internal.v1.tracing",
        ]
      : [
          "io.containerd.grpc.v1.cri",
          "io.containerd.snapshotter.v1.aufs",
          "io.containerd.snapshotter.v1.btrfs",
          "io.containerd.snapshotter.v1.devmapper",
          "io.containerd.snapshotter.v1.zfs",
          "io.containerd.tracing.processor.v1.otlp",
          "io.containerd.internal.v1.tracing",
        ];
  return [
    `version = ${majorVersion >= 2 ? 3 : 2}`,
    `root = ${JSON.stringify(join(dir, "root"))}`,
    `state = ${JSON.stringify(join(dir, "state"))}`,
    `disabled_plugins = ${JSON.stringify(disabled)}`,
    "",
    "[grpc]",
    `  address = ${JSON.stringify(join(dir, "containerd.sock"))}`,
    "",
    "[ttrpc]",
    `  address = ${JSON.stringify(join(dir, "containerd.sock.ttrpc"))}`,
    "",
    "[debug]",
    `  address = ""`,
    `  level = "info"`,
    "",
    "[metrics]",
    `  address = ""`,
    "",
    "[plugins]",
    `  [plugins.${JSON.stringify("io.containerd.internal.v1.opt")}]`,
    `    path = ${JSON.stringify(join(dir, "opt"))}`,
    "",
  ].join("\n");
}

export async function startContainerd(): Promise<Containerd> {
  if (process.getuid?.() !== 0) throw new Error("containerd needs root");
  const version = await containerdVersion();
  const major = Number(version.split(".")[0]);
  // Short path: unix socket paths are limited to ~107 bytes.
  const dir = mkdtempSync(join(tmpdir(), "ctd-"));
  const address = join(dir, "containerd.sock");
  const configPath = join(dir, "config.toml");
  writeFileSync(configPath, containerdConfig(dir, major));

  const child = spawn("containerd", ["--config", configPath], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (log += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (log += chunk));
  let exited = false;
  const exit = new Promise<void>((resolveExit) => {
    child.once("exit", () => {
      exited = true;
      resolveExit();
    });
    child.once("error", (error) => {
      exited = true;
      log += `\nspawn error: ${error.message}`;
      resolveExit();
    });
  });
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);

  const env = { ...process.env, CONTAINERD_SNAPSHOTTER: "native", CONTAINERD_ADDRESS: address };
  const ctr = (args: string[], options: CtrOptions = {}) =>
    run("ctr", ["--address", address, "--namespace", options.namespace ?? "default", ...args], {
      env,
      timeout: options.timeout ?? 120_000,
      input: options.input,
    });

  const stop = async () => {
    process.removeListener("exit", killOnExit);
    if (!exited) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exit;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) {
      await stop();
      throw new Error(`containerd exited before serving ${address}:\n${log}`);
    }
    if (existsSync(address)) {
      try {
        await ctr(["version"], { timeout: 5_000 });
        break;
      } catch {
        // not ready yet
      }
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`containerd did not serve ${address} within 30 s:\n${log}`);
    }
    await sleep(50);
  }

  return {
    address,
    dir,
    pid: child.pid!,
    version,
    ctr,
    pull: (ref, flags = [], options) => ctr(["images", "pull", "--plain-http", "--snapshotter", "native", ...flags, ref], options),
    images: async (options) => parseImagesCheck((await ctr(["images", "check", "--snapshotter", "native"], options)).stdout),
    content: async (options) =>
      (await ctr(["content", "ls", "-q"], options)).stdout
        .split("\n")
        .map((line) => line.trim())
        .filter(Boolean),
    snapshots: async (options) =>
      (await ctr(["snapshots", "--snapshotter", "native", "ls"], options)).stdout
        .split("\n")
        .slice(1)
        .map((line) => line.trim().split(/\s+/)[0]!)
        .filter(Boolean),
    logs: () => log,
    stop,
  };
}

/** Parses `ctr images check`: REF TYPE DIGEST STATUS SIZE UNPACKED (STATUS and SIZE hold spaces). */
export function parseImagesCheck(output: string): CtrImage[] {
  return output
    .split("\n")
    .slice(1)
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const fields = line.split(/\s+/);
      const status = /\b((?:in)?complete \(\d+\/\d+\)|missing.*?\(\d+\/\d+\))/.exec(line)?.[1] ?? "";
      return {
        ref: fields[0]!,
        mediaType: fields[1]!,
        digest: fields[2]!,
        status,
        unpacked: fields[fields.length - 1] === "true",
      };
    });
}
