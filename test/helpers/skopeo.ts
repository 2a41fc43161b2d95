// skopeo against a plain-HTTP registry on loopback.
import { run } from "./exec.ts";

export interface SkopeoInspect {
  Name: string;
  Digest: string;
  RepoTags?: string[];
  Architecture?: string;
  Os?: string;
  Layers?: string[];
}

/** `skopeo inspect docker://REF` (the image for this platform; Digest is of the top manifest). */
export async function skopeoInspect(ref: string): Promise<SkopeoInspect> {
  const { stdout } = await run("skopeo", ["inspect", "--tls-verify=false", `docker://${ref}`]);
  return JSON.parse(stdout) as SkopeoInspect;
}

/** `skopeo inspect --raw docker://REF`: the manifest bytes exactly as served. */
export async function skopeoInspectRaw(ref: string): Promise<Buffer> {
  return (await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${ref}`], { binary: true })).stdout;
}

/** `skopeo list-tags docker://NAME`. */
export async function skopeoListTags(repository: string): Promise<string[]> {
  const { stdout } = await run("skopeo", ["list-tags", "--tls-verify=false", `docker://${repository}`]);
  return (JSON.parse(stdout) as { Tags: string[] }).Tags;
}

/** `skopeo copy --all --preserve-digests SRC DEST` with TLS verification off on both sides. */
export async function skopeoCopy(source: string, destination: string, extra: string[] = []): Promise<void> {
  await run("skopeo", [
    "--insecure-policy",
    "copy",
    "--quiet",
    "--all",
    "--preserve-digests",
    "--src-tls-verify=false",
    "--dest-tls-verify=false",
    ...extra,
    source,
    destination,
  ]);
}
