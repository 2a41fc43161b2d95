/**
 * Which tag, if any, an index.json annotation (`org.opencontainers.image.ref.name` or
 * `io.containerd.image.name`) gives for a repository name. Tools write different forms:
 *   umoci / skopeo `oci-archive:f:tag`   `v1`
 *   skopeo `oci-archive:f:name:tag`       `name:v1`
 *   podman save                           `localhost/name:v1`
 *   ctr export                            `docker.io/library/name:v1`
 * A bare tag holds for every name. `docker.io/library/alpine:3.19` holds for `alpine`,
 * `library/alpine` and `docker.io/library/alpine`.
 */
import { isValidTag } from "./grammar.ts";

const DOCKER_HUB = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"]);

/** A first path component that names a registry host rather than a repository path. */
function isRegistryHost(component: string): boolean {
  return component === "localhost" || component.includes(".") || component.includes(":");
}

/** The repository names a `repo` (without tag) answers to. */
function namesOf(repo: string): string[] {
  const names = [repo];
  const slash = repo.indexOf("/");
  if (slash > 0 && isRegistryHost(repo.slice(0, slash))) {
    const host = repo.slice(0, slash);
    const path = repo.slice(slash + 1);
    names.push(path);
    if (DOCKER_HUB.has(host) && path.startsWith("library/")) names.push(path.slice("library/".length));
  } else if (repo.startsWith("library/")) {
    names.push(repo.slice("library/".length));
  }
  return names;
}

export interface ParsedRefName {
  /** `undefined` for a bare tag, which holds for any name. */
  repo?: string;
  tag: string;
}

export function parseRefName(value: string): ParsedRefName | undefined {
  const noDigest = value.split("@")[0];
  const colon = noDigest.lastIndexOf(":");
  const slash = noDigest.lastIndexOf("/");
  if (colon < 0 || colon < slash) {
    // No tag part: a bare tag (no slash), or a repository with no tag.
    return slash < 0 && isValidTag(noDigest) ? { tag: noDigest } : undefined;
  }
  const tag = noDigest.slice(colon + 1);
  const repo = noDigest.slice(0, colon);
  if (!isValidTag(tag) || repo === "") return undefined;
  return { repo, tag };
}

/** The tag an annotation value gives for `name`, or `undefined`. */
export function tagForName(value: string, name: string): string | undefined {
  const parsed = parseRefName(value);
  if (!parsed) return undefined;
  if (parsed.repo === undefined) return parsed.tag;
  return namesOf(parsed.repo).includes(name) ? parsed.tag : undefined;
}
