/** `kiln-oci/sign`: keys, signing and attesting images (cosign's forms), verifying them against keys and policies; SLSA provenance. */
export {
  decryptPrivateKey,
  generateKeys,
  isEncrypted,
  type KeyPair,
  type KeySpec,
  keyHint,
  loadPrivateKey,
  loadPublicKey,
  parsePrivateKey,
  parsePublicKey,
  readKeyText,
} from '../sign/keys.js';
export {
  loadPolicy,
  matchesPattern,
  type Policy,
  type PolicyKey,
  type PolicyRule,
  parsePolicy,
  SLSA_PROVENANCE_TYPES,
} from '../sign/policy.js';
export {
  type Attestation,
  type AttestOptions,
  attestImage,
  type SignedManifest,
  type SigningScope,
  type SignOptions,
  type SignResult,
  signatureTag,
  signImage,
} from '../sign/sign.js';
export { type ProvenanceInput, provenancePredicate, SLSA_PROVENANCE_V1 } from '../sign/slsa.js';
export {
  type Check,
  type CheckKind,
  requireVerified,
  type VerifiedImage,
  type VerifyOptions,
  type VerifyReport,
  verificationError,
  verifyImage,
} from '../sign/verify.js';
