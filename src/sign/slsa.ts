/**
 * SLSA provenance v1 (`https://slsa.dev/provenance/v1`) for an image kiln built: what the build
 * was told (command, environment, sources), what it ran on (the toolchain image, base images) and
 * who ran it (kiln). Pure: build/build.ts gathers the facts. With SOURCE_DATE_EPOCH set the build
 * is reproducible and the predicate holds no times; without it, when the build started and ended.
 */
import { parseDigest } from '../oci/digest.js';

/** The predicate type of SLSA provenance v1. */
export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
/** What a kiln build is (SLSA's buildType): docs/signing.md describes its parameters. */
export const KILN_BUILD_TYPE = 'https://www.npmjs.com/package/kiln-oci#build/v1';
export const KILN_BUILDER_ID = 'https://www.npmjs.com/package/kiln-oci';

/** What a build knows about itself, for its SLSA provenance (build/build.ts gathers it). */
export interface ProvenanceInput {
  /** The kiln version, when known. */
  version?: string;
  /** The build command, as run in the toolchain. */
  command?: string;
  /** The environment kiln.yaml and --env gave the command. */
  env?: Record<string, string>;
  /** os/arch[/variant] built for. */
  platform: string;
  /** The digest of the sources (kiln's sources digest, `sha256:…`). */
  sources?: string;
  /** The git commit and the remote (https URL) of the project, when known. */
  git?: { revision?: string; source?: string };
  toolchain?: { name: string; digest: string };
  base?: { name: string; digest: string };
  /** When the build started and finished: only without SOURCE_DATE_EPOCH. */
  startedOn?: string;
  finishedOn?: string;
}

interface ResourceDescriptor {
  uri?: string;
  name?: string;
  digest: Record<string, string>;
}

function digestSet(digest: string): Record<string, string> {
  const { algorithm, hex } = parseDigest(digest);
  return { [algorithm]: hex };
}

/** The SLSA provenance v1 predicate of a kiln build (docs/signing.md shows one). */
export function provenancePredicate(input: ProvenanceInput): Record<string, unknown> {
  const externalParameters: Record<string, unknown> = { platform: input.platform };
  if (input.command !== undefined) externalParameters.command = input.command;
  if (input.env && Object.keys(input.env).length > 0)
    externalParameters.env = Object.fromEntries(
      Object.entries(input.env).sort(([a], [b]) => (a < b ? -1 : 1)),
    );
  const source: Record<string, unknown> = {};
  if (input.sources) source.digest = digestSet(input.sources);
  if (input.git?.source) source.uri = input.git.source;
  if (input.git?.revision) source.revision = input.git.revision;
  if (Object.keys(source).length > 0) externalParameters.source = source;

  const resolvedDependencies: ResourceDescriptor[] = [];
  if (input.git?.source && input.git.revision)
    resolvedDependencies.push({
      uri: `git+${input.git.source}@${input.git.revision}`,
      digest: { gitCommit: input.git.revision },
    });
  if (input.toolchain)
    resolvedDependencies.push({
      uri: `oci://${input.toolchain.name}`,
      name: 'toolchain',
      digest: digestSet(input.toolchain.digest),
    });
  if (input.base)
    resolvedDependencies.push({
      uri: `oci://${input.base.name}`,
      name: 'base',
      digest: digestSet(input.base.digest),
    });

  const runDetails: Record<string, unknown> = {
    builder: { id: KILN_BUILDER_ID, ...(input.version ? { version: { 'kiln-oci': input.version } } : {}) },
  };
  if (input.startedOn || input.finishedOn)
    runDetails.metadata = {
      ...(input.startedOn ? { startedOn: input.startedOn } : {}),
      ...(input.finishedOn ? { finishedOn: input.finishedOn } : {}),
    };
  return {
    buildDefinition: { buildType: KILN_BUILD_TYPE, externalParameters, resolvedDependencies },
    runDetails,
  };
}
