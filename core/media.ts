/** Media types the registry recognises. */
export const MediaType = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
} as const;

export function isIndexMediaType(mediaType: string): boolean {
  return mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList;
}

export function isManifestMediaType(mediaType: string): boolean {
  return (
    mediaType === MediaType.ociManifest ||
    mediaType === MediaType.dockerManifest ||
    isIndexMediaType(mediaType)
  );
}

export interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture?: string; os?: string; variant?: string; "os.version"?: string };
  urls?: string[];
  artifactType?: string;
}

/** Annotation keys that name an image in an index.json. */
export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";
export const CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name";
