/**
 * One member added to a tar-stream pack, its content streamed with back-pressure. Shared by
 * `kiln export` (flattened layers) and the docker runner (the source uploaded to a remote engine).
 */
import type { Header, Pack } from 'tar-stream';

/**
 * Adds `header` to `pack`; a file's bytes come from `content` (none: an empty file). If the content
 * fails, the entry is destroyed (so the tar can never look complete) and the content's error thrown;
 * otherwise whatever tar-stream reports for the entry (a size mismatch) is thrown.
 */
export async function packEntry(
  pack: Pack,
  header: Partial<Header> & { name: string },
  content?: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): Promise<void> {
  let sink!: ReturnType<Pack['entry']>;
  const written = new Promise<void>((resolve, reject) => {
    sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
  });
  written.catch(() => {}); // awaited below, unless the content fails first
  // A failed entry is reported through the callback above; without a listener its 'error' would crash.
  sink.on('error', () => {});
  if (header.type === 'file') {
    try {
      for await (const chunk of content ?? []) {
        if (!sink.write(chunk as Buffer))
          await new Promise<void>((resolve) => {
            const done = () => {
              sink.off('drain', done);
              sink.off('close', done);
              resolve();
            };
            sink.on('drain', done);
            sink.on('close', done);
          });
        if (sink.destroyed) break;
      }
    } catch (err) {
      sink.destroy(err as Error);
      throw err;
    }
    sink.end(undefined); // streamx typings want an argument
  }
  await written;
}
