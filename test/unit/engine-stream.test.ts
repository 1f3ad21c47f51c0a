/**
 * The Engine API's multiplexed output stream (a container without a TTY), split into stdout and
 * stderr by demuxStream however the bytes arrive: whole, one byte at a time, or cut anywhere.
 */
import assert from 'node:assert/strict';
import { PassThrough, Readable, Writable } from 'node:stream';
import { test } from 'node:test';
import { demuxStream } from '../../src/engine/client.js';

function frame(stream: 1 | 2, text: string): Buffer {
  const payload = Buffer.from(text);
  const head = Buffer.alloc(8);
  head[0] = stream;
  head.writeUInt32BE(payload.length, 4);
  return Buffer.concat([head, payload]);
}

async function demux(chunks: Buffer[]): Promise<{ out: string; err: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  const read = (s: PassThrough) => s.toArray().then((parts) => Buffer.concat(parts).toString());
  const texts = Promise.all([read(out), read(err)]);
  await demuxStream(Readable.from(chunks), out, err);
  out.end();
  err.end();
  const [o, e] = await texts;
  return { out: o, err: e };
}

test('demuxStream: frames to stdout and stderr, wherever the chunks are cut', async () => {
  const bytes = Buffer.concat([
    frame(1, 'hello\n'),
    frame(2, 'warning: x\n'),
    frame(1, ''),
    frame(1, 'world\n'),
    frame(2, 'é'.repeat(40)),
  ]);
  const want = { out: 'hello\nworld\n', err: `warning: x\n${'é'.repeat(40)}` };
  assert.deepEqual(await demux([bytes]), want);
  assert.deepEqual(await demux([...bytes].map((b) => Buffer.from([b]))), want);
  for (let cut = 1; cut < bytes.length; cut++)
    assert.deepEqual(await demux([bytes.subarray(0, cut), bytes.subarray(cut)]), want, `cut at ${cut}`);
});

test('demuxStream: writes nothing to a full stream before it drains (a slow reader)', async () => {
  let early = 0;
  let written = 0;
  // A reader that takes its time, and counts writes made while it had asked to wait.
  class Slow extends Writable {
    override write(chunk: Buffer, ...rest: never[]): boolean {
      if (this.writableNeedDrain) early++;
      return super.write(chunk, ...rest);
    }
    override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
      written += chunk.length;
      setImmediate(done);
    }
  }
  const slow = new Slow({ highWaterMark: 1024 });
  const chunks = Array.from({ length: 64 }, (_, i) => frame(1, String(i % 10).repeat(4096)));
  await demuxStream(Readable.from(chunks), slow, slow);
  await new Promise<void>((resolve) => slow.end(resolve));
  assert.equal(written, 64 * 4096);
  assert.equal(early, 0);
});
