/** Assertions on the KilnErrors a library call throws or rejects with. */
import assert from 'node:assert/strict';
import { isKilnError, type KilnError } from '../../src/errors.js';

/** The KilnError `fn` throws; fails the test if it throws nothing or something else. */
export function thrown(fn: () => unknown): KilnError {
  try {
    fn();
  } catch (err) {
    assert.ok(isKilnError(err), `expected a KilnError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected an error');
}

/** The KilnError `promise` rejects with; fails the test if it resolves or rejects with something else. */
export async function rejected(promise: Promise<unknown>): Promise<KilnError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(isKilnError(err), `expected a KilnError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected an error');
}

/** `fn` refuses `input` with the error `code`, in one line that shows the input and says `fragment`. */
export function assertRefusal(fn: () => unknown, code: string, input: string, fragment: string): KilnError {
  const err = thrown(fn);
  assert.equal(err.code, code);
  assert.ok(
    err.message.includes(fragment),
    `${JSON.stringify(err.message)} lacks ${JSON.stringify(fragment)}`,
  );
  assert.ok(err.message.includes(JSON.stringify(input)), 'message shows the input');
  assert.ok(!err.message.includes('\n'), 'message is one line');
  return err;
}
