import { KilnError } from '../errors.js';
import { formatReference } from '../oci/reference.js';
import { ArchiveDestination, DockerArchiveSource, OciArchiveSource } from './archive.js';
import { OciDirDestination, OciDirSource } from './oci-dir.js';
import { type ImageLocation, parseLocation } from './parse.js';
import type { ImageDestination, ImageSource } from './types.js';

function unsupported(loc: ImageLocation, input: string): never {
  const what =
    loc.transport === 'registry'
      ? `registry reference ${formatReference(loc.ref)}`
      : `${loc.transport}: transport`;
  throw new KilnError('E_UNSUPPORTED', `${what} is not supported yet (${input})`, {
    hint: 'kiln reads and writes oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG], and writes docker-daemon:NAME:TAG',
  });
}

export async function openSource(input: string): Promise<ImageSource> {
  const loc = parseLocation(input);
  switch (loc.transport) {
    case 'oci':
      return OciDirSource.open(input, loc.path, loc.tag);
    case 'oci-archive':
      return OciArchiveSource.open(input, loc.path, loc.tag);
    case 'docker-archive':
      return DockerArchiveSource.open(input, loc.path, loc.ref);
    default:
      return unsupported(loc, input);
  }
}

export async function openDestination(input: string): Promise<ImageDestination> {
  const loc = parseLocation(input);
  switch (loc.transport) {
    case 'oci':
      return OciDirDestination.open(input, loc.path, loc.tag);
    case 'oci-archive':
      return new ArchiveDestination(input, loc.path, 'oci', loc.tag);
    case 'docker-archive':
      return new ArchiveDestination(input, loc.path, 'docker', undefined, loc.ref);
    case 'docker-daemon': {
      const { DockerDaemonDestination } = await import('./docker-daemon.js');
      return new DockerDaemonDestination(input, loc.ref);
    }
    default:
      return unsupported(loc, input);
  }
}
