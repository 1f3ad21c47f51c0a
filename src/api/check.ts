/** `kiln-oci/check`: what each WebAssembly consumer would do with an image, replayed from its source before the push. */
export {
  assertChecked,
  type CheckOptions,
  type CheckResult,
  CONSUMER_CHECKS,
  checkImage,
  checkSource,
  checkSubject,
} from '../check/check.js';
export {
  CONSUMERS,
  type Consumer,
  type ConsumerName,
  type Finding,
  type Picked,
  type Rule,
  type Severity,
  type Verdict,
} from '../check/consumer.js';
export { type CheckSubject, loadSubject } from '../check/subject.js';
