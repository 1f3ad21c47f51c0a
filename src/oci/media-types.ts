/** Media types kiln reads and writes. OCI image-spec v1.1 and Docker image manifest v2 schema 2. */
export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciLayerNondistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  OciEmpty: 'application/vnd.oci.empty.v1+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  // WebAssembly conventions (docs/formats.md)
  WasmConfigV0: 'application/vnd.wasm.config.v0+json',
  WasmLayer: 'application/wasm',
  WasmToOciConfig: 'application/vnd.wasm.config.v1+json',
  WasmToOciLayer: 'application/vnd.wasm.content.layer.v1+wasm',
  IstioOciConfig: 'application/vnd.module.wasm.config.v1+json',
  IstioOciLayer: 'application/vnd.module.wasm.content.layer.v1+wasm',
  /** runwasi's wasm layer (its oci-tar-builder; marked "subject to change" there). */
  RunwasiLayer: 'application/vnd.bytecodealliance.wasm.component.layer.v0+wasm',
  /** Spin (`spin registry push`): the locked app, static files, archived layers. */
  SpinLockedApp: 'application/vnd.fermyon.spin.application.v1+config',
  SpinDataLayer: 'application/vnd.wasm.content.layer.v1+data',
  SpinArchiveLayer: 'application/vnd.wasm.content.bundle.v1.tar+gzip',
} as const;

export function isIndexType(mediaType: string | undefined): boolean {
  return mediaType === MediaType.OciIndex || mediaType === MediaType.DockerManifestList;
}

export function isManifestType(mediaType: string | undefined): boolean {
  return mediaType === MediaType.OciManifest || mediaType === MediaType.DockerManifest;
}

/** Layer types whose blob is a tar stream (compressed or not) that unpacks into the root filesystem. */
export function layerCompression(mediaType: string): 'gzip' | 'zstd' | 'none' | undefined {
  switch (mediaType) {
    case MediaType.OciLayerGzip:
    case MediaType.OciLayerNondistributableGzip:
    case MediaType.DockerLayerGzip:
    case MediaType.DockerForeignLayerGzip:
      return 'gzip';
    case MediaType.OciLayerZstd:
      return 'zstd';
    case MediaType.OciLayer:
      return 'none';
    default:
      return undefined;
  }
}
